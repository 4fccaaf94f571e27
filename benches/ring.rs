//! Micro-benchmarks of the hot paths (divan): `cargo bench --bench ring`.
//!
//! Numbers on a shared 2-core machine are noisy; compare medians from one run.

// The crate's rust-version is what the library needs; divan's macros expand to newer std items
// (divan needs 1.80, as proptest in the tests needs 1.88), which users of the library never build.
#![allow(clippy::incompatible_msrv)]

use std::hint::black_box;

use shmbus::{Bus, BusBuilder, Recv};

fn main() {
    divan::main();
}

/// A bus in /dev/shm, removed on drop.
struct ShmBus(String, Bus);

impl ShmBus {
    fn new(tag: &str, capacity: usize, multi: bool) -> Self {
        let name = format!("bench-{tag}-{}", std::process::id());
        let _ = Bus::remove(&name);
        let b = BusBuilder::new(&name).slots(4096).capacity(capacity);
        let bus = if multi { b.multi_producer() } else { b }
            .create()
            .expect("create bench bus");
        ShmBus(name, bus)
    }
}

impl Drop for ShmBus {
    fn drop(&mut self) {
        let _ = Bus::remove(&self.0);
    }
}

#[divan::bench(args = [8, 64, 512])]
fn publish_single_producer(bencher: divan::Bencher, len: usize) {
    let bus = ShmBus::new("sp", 512, false);
    let mut tx = bus.1.publisher().unwrap();
    let payload = vec![0xabu8; len];
    bencher.bench_local(|| tx.publish_bytes(black_box(&payload)).unwrap());
}

#[divan::bench(args = [8, 64, 512])]
fn publish_multi_producer(bencher: divan::Bencher, len: usize) {
    let bus = ShmBus::new("mp", 512, true);
    let mut tx = bus.1.publisher().unwrap();
    let payload = vec![0xabu8; len];
    bencher.bench_local(|| tx.publish_bytes(black_box(&payload)).unwrap());
}

#[divan::bench]
fn publish_typed_u64x8(bencher: divan::Bencher) {
    let name = format!("bench-typed-{}", std::process::id());
    let _ = Bus::remove(&name);
    let bus = BusBuilder::new(&name)
        .message_type::<[u64; 8]>()
        .slots(4096)
        .create()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    let msg = [7u64; 8];
    bencher.bench_local(|| tx.publish(black_box(&msg)));
    drop(tx);
    let _ = Bus::remove(&name);
}

#[divan::bench]
fn try_recv_empty(bencher: divan::Bencher) {
    let bus = ShmBus::new("empty", 64, false);
    let _tx = bus.1.publisher().unwrap();
    let mut rx = bus.1.subscriber();
    bencher.bench_local(|| matches!(black_box(rx.try_recv()), Recv::Empty));
}

#[divan::bench(args = [64])]
fn try_recv_message(bencher: divan::Bencher, len: usize) {
    let bus = ShmBus::new("recv", 64, false);
    let mut tx = bus.1.publisher().unwrap();
    let mut rx = bus.1.subscriber();
    let payload = vec![1u8; len];
    bencher.bench_local(|| {
        tx.publish_bytes(&payload).unwrap();
        matches!(black_box(rx.try_recv()), Recv::Message(_))
    });
}

/// Two threads, one publishing 64-byte messages and one receiving, on a 4096-slot ring:
/// throughput of the pair (the receiver may be lapped; the figure counts published messages).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn two_thread_throughput_64b(bencher: divan::Bencher) {
    const N: u64 = 200_000;
    let bus = ShmBus::new("tput", 64, false);
    bencher
        .counter(divan::counter::ItemsCount::new(N))
        .bench_local(|| {
            let mut rx = bus.1.subscriber();
            let mut tx = bus.1.publisher().unwrap();
            let start = tx.stats().published;
            std::thread::scope(|s| {
                let reader = s.spawn(move || {
                    let (mut got, mut lost) = (0u64, 0u64);
                    while got + lost < N {
                        match rx.try_recv() {
                            Recv::Message(_) => got += 1,
                            Recv::Lapped { lost: n } => lost += n,
                            _ => std::hint::spin_loop(),
                        }
                    }
                    got
                });
                let payload = [5u8; 64];
                while tx.stats().published - start < N {
                    tx.publish_bytes(&payload).unwrap();
                }
                black_box(reader.join().unwrap())
            })
        });
}
