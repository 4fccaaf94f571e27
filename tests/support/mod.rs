//! Helpers shared by the core integration tests: unique bus names that clean up after
//! themselves, checksummed payloads, and re-executing the test binary as a child process.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A unique bus name, removed from /dev/shm when dropped (also when the test fails).
pub struct TestBus(pub String);

impl TestBus {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        TestBus(format!(
            "test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = shmbus::Bus::remove(&self.0);
    }
}

/// FNV-1a of `bytes`.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A self-checking payload of `len` bytes (>= 24): producer id, counter, a body derived from
/// both, and the checksum of everything before it in the last 8 bytes.
pub fn make_payload(buf: &mut [u8], producer: u64, counter: u64) {
    let len = buf.len();
    assert!(len >= 24);
    buf[..8].copy_from_slice(&producer.to_le_bytes());
    buf[8..16].copy_from_slice(&counter.to_le_bytes());
    let mut x = producer.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ counter;
    for b in &mut buf[16..len - 8] {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    let sum = fnv(&buf[..len - 8]);
    buf[len - 8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a payload made by [`make_payload`]; returns (producer, counter) if it is whole.
pub fn check_payload(buf: &[u8]) -> Option<(u64, u64)> {
    let len = buf.len();
    if len < 24 {
        return None;
    }
    let sum = u64::from_le_bytes(buf[len - 8..].try_into().unwrap());
    if fnv(&buf[..len - 8]) != sum {
        return None;
    }
    Some((
        u64::from_le_bytes(buf[..8].try_into().unwrap()),
        u64::from_le_bytes(buf[8..16].try_into().unwrap()),
    ))
}

/// Runs the current test binary as a child process executing only test `test_name`, with
/// `SHMBUS_CHILD_ROLE=role` and extra environment; its stdout is piped.
pub fn spawn_child(test_name: &str, role: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current test binary"));
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMBUS_CHILD_ROLE", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// The role this process was started in, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var("SHMBUS_CHILD_ROLE").ok()
}

pub fn env_u64(key: &str) -> u64 {
    std::env::var(key)
        .unwrap_or_else(|_| panic!("{key} not set"))
        .parse()
        .expect("number")
}

/// Waits for `cond` to hold, polling, up to `timeout`; returns whether it did.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    cond()
}

/// A child's result line: `RESULT key=value key=value ...` on its stdout.
pub fn parse_result(stdout: &str) -> std::collections::HashMap<String, u64> {
    // The test harness may print "test child_entry ... " on the same line first.
    let line = stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| &l[i + 7..]))
        .unwrap_or_else(|| panic!("no RESULT line in child output:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_owned(), v.parse().expect("number"))
        })
        .collect()
}
