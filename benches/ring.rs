//! Micro-benchmarks of the hot paths (divan): `cargo bench --bench ring`.
//!
//! Each operation is a group of two figures from the same run: `shmbus`, the library call, and
//! `floor`, the least code that does the same memory work on a ring of the same layout (see the
//! [`floor`] module). Numbers on a shared machine are noisy; read each figure as its ratio to the
//! floor beside it, not as an absolute time.

// The crate's rust-version is what the library needs; divan's macros expand to newer std items
// (divan needs 1.80, as proptest in the tests needs 1.88), which users of the library never build.
#![allow(clippy::incompatible_msrv)]

use std::hint::black_box;

use shmbus::{Bus, BusBuilder, Recv};

fn main() {
    divan::main();
}

/// Slots of every benchmarked ring (bus and floor alike).
const SLOTS: u64 = 4096;

/// A bus in /dev/shm, removed on drop.
struct ShmBus(String, Bus);

impl ShmBus {
    fn new(tag: &str, capacity: usize, multi: bool) -> Self {
        let name = format!("bench-{tag}-{}", std::process::id());
        let _ = Bus::remove(&name);
        let b = BusBuilder::new(&name).slots(SLOTS).capacity(capacity);
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

/// The floor of each operation: a bare seqlock (Boehm, "Can seqlocks get along with programming
/// language memory models?", 2012) over a heap ring with the bus's slot layout (version word,
/// length word, payload words; the same stride), writing and reading the same bytes.
///
/// It is the floor because a seqlock message cannot be published or read with less: a writer
/// must make the slot odd before touching the payload, order that before the payload stores,
/// store the payload, and publish the even version with Release; a reader must Acquire the
/// version, copy, fence and re-check. Whatever `shmbus` costs above it (sequence bookkeeping, the
/// write cursor, the producer heartbeat, the multi-producer claim and take, lap and stall
/// handling) is overhead to justify.
mod floor {
    use std::sync::atomic::{fence, AtomicU64, Ordering};

    use shmbus::layout::SLOT_HEADER_BYTES;

    pub struct Ring {
        words: Box<[AtomicU64]>,
        stride_words: usize,
        mask: u64,
        capacity: usize,
    }

    impl Ring {
        pub fn new(slots: u64, capacity: usize) -> Self {
            let stride_words = (SLOT_HEADER_BYTES + capacity).next_multiple_of(64) / 8;
            Ring {
                words: (0..slots as usize * stride_words)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                stride_words,
                mask: slots - 1,
                capacity,
            }
        }

        fn slot(&self, seq: u64) -> &[AtomicU64] {
            let base = (seq & self.mask) as usize * self.stride_words;
            &self.words[base..base + self.stride_words]
        }

        /// The minimal seqlock write of `bytes` as sequence `seq`.
        #[inline]
        pub fn write(&self, seq: u64, bytes: &[u8]) {
            let slot = self.slot(seq);
            slot[0].store(2 * seq + 1, Ordering::Relaxed);
            // ORDERING: the odd version before the payload stores; pairs with the reader's
            // Acquire fence before its re-check.
            fence(Ordering::Release);
            slot[1].store(bytes.len() as u64, Ordering::Relaxed);
            let chunks = bytes.chunks_exact(8);
            let tail = chunks.remainder();
            let mut dst = slot[2..].iter();
            for (c, w) in chunks.zip(dst.by_ref()) {
                let word = u64::from_ne_bytes(c.try_into().expect("8-byte chunk"));
                w.store(word, Ordering::Relaxed);
            }
            if !tail.is_empty() {
                let mut last = [0u8; 8];
                last[..tail.len()].copy_from_slice(tail);
                if let Some(w) = dst.next() {
                    w.store(u64::from_ne_bytes(last), Ordering::Relaxed);
                }
            }
            // ORDERING: Release pairs with the reader's Acquire load of the version.
            slot[0].store(2 * seq + 2, Ordering::Release);
        }

        /// The minimal multi-producer seqlock write: the two read-modify-writes no lock-free
        /// multi-producer ring without flow control can do without (a `fetch_add` claiming the
        /// sequence on the shared cursor, and a CAS taking the slot from the previous lap, so a
        /// writer a lap behind is never written over), then the payload and the even version.
        #[inline]
        pub fn write_multi(&self, cursor: &AtomicU64, bytes: &[u8]) {
            let seq = cursor.fetch_add(1, Ordering::Relaxed);
            let slot = self.slot(seq);
            let prev = (2 * seq + 2).saturating_sub(2 * (self.mask + 1));
            // ORDERING: AcqRel: Acquire of the previous occupant's payload stores, Release of
            // the odd version before ours (as the fence in `write`).
            let _ =
                slot[0].compare_exchange(prev, 2 * seq + 1, Ordering::AcqRel, Ordering::Relaxed);
            slot[1].store(bytes.len() as u64, Ordering::Relaxed);
            for (c, w) in bytes.chunks(8).zip(&slot[2..]) {
                let mut word = [0u8; 8];
                word[..c.len()].copy_from_slice(c);
                w.store(u64::from_ne_bytes(word), Ordering::Relaxed);
            }
            // ORDERING: Release pairs with the reader's Acquire load of the version.
            slot[0].store(2 * seq + 2, Ordering::Release);
        }

        /// The minimal seqlock read of sequence `seq` into `buf`: its length if it was whole.
        #[inline]
        pub fn read(&self, seq: u64, buf: &mut [u64]) -> Option<usize> {
            let slot = self.slot(seq);
            // ORDERING: Acquire pairs with the writer's Release store of the even version.
            let v1 = slot[0].load(Ordering::Acquire);
            if v1 != 2 * seq + 2 {
                return None;
            }
            let len = (slot[1].load(Ordering::Relaxed) as usize).min(self.capacity);
            for (d, s) in buf[..len.div_ceil(8)].iter_mut().zip(&slot[2..]) {
                *d = s.load(Ordering::Relaxed);
            }
            // ORDERING: pairs with the writer's Release fence after its odd version.
            fence(Ordering::Acquire);
            (slot[0].load(Ordering::Relaxed) == v1).then_some(len)
        }

        /// An empty poll at its least: one Acquire load of the version of the awaited slot.
        #[inline]
        pub fn version(&self, seq: u64) -> u64 {
            // ORDERING: Acquire, as a reader must, to see the payload of a version it accepts.
            self.slot(seq)[0].load(Ordering::Acquire)
        }
    }
}

/// Publishes `len`-byte messages to successive slots of a ring with `capacity`-byte payloads.
fn floor_publish(bencher: divan::Bencher, len: usize, capacity: usize) {
    let ring = floor::Ring::new(SLOTS, capacity);
    let payload = vec![0xabu8; len];
    let mut seq = 0u64;
    bencher.bench_local(|| {
        ring.write(seq, black_box(&payload));
        seq += 1;
    });
}

/// The bus's publish of `len` bytes on a 512-slot bus, single or multi producer.
fn shmbus_publish(bencher: divan::Bencher, len: usize, tag: &str, multi: bool) {
    let bus = ShmBus::new(tag, 512, multi);
    let mut tx = bus.1.publisher().unwrap();
    let payload = vec![0xabu8; len];
    bencher.bench_local(|| tx.publish_bytes(black_box(&payload)).unwrap());
}

mod publish_single_producer {
    use super::*;

    #[divan::bench(args = [8, 64, 512])]
    fn shmbus(bencher: divan::Bencher, len: usize) {
        shmbus_publish(bencher, len, "sp", false);
    }

    #[divan::bench(args = [8, 64, 512])]
    fn floor(bencher: divan::Bencher, len: usize) {
        floor_publish(bencher, len, 512);
    }
}

/// `floor` is the single-producer write floor and nothing more: claiming a sequence and taking
/// the slot are what a multi-producer bus adds. `floor_with_claim` adds exactly those two
/// read-modify-writes, the least a lock-free multi-producer ring without flow control needs.
mod publish_multi_producer {
    use super::*;

    #[divan::bench(args = [8, 64, 512])]
    fn shmbus(bencher: divan::Bencher, len: usize) {
        shmbus_publish(bencher, len, "mp", true);
    }

    #[divan::bench(args = [8, 64, 512])]
    fn floor(bencher: divan::Bencher, len: usize) {
        floor_publish(bencher, len, 512);
    }

    /// The single-producer floor plus the two read-modify-writes a multi-producer claim needs.
    #[divan::bench(args = [8, 64, 512])]
    fn floor_with_claim(bencher: divan::Bencher, len: usize) {
        let ring = floor::Ring::new(SLOTS, 512);
        // Its own cache line, as the bus's cursor.
        let cursor = Box::new([const { std::sync::atomic::AtomicU64::new(0) }; 8]);
        let payload = vec![0xabu8; len];
        bencher.bench_local(|| ring.write_multi(&cursor[0], black_box(&payload)));
    }
}

mod publish_typed_u64x8 {
    use super::*;

    #[divan::bench]
    fn shmbus(bencher: divan::Bencher) {
        let name = format!("bench-typed-{}", std::process::id());
        let _ = Bus::remove(&name);
        let bus = BusBuilder::new(&name)
            .message_type::<[u64; 8]>()
            .slots(SLOTS)
            .create()
            .unwrap();
        let mut tx = bus.publisher().unwrap();
        let msg = [7u64; 8];
        bencher.bench_local(|| tx.publish(black_box(&msg)));
        drop(tx);
        let _ = Bus::remove(&name);
    }

    #[divan::bench]
    fn floor(bencher: divan::Bencher) {
        floor_publish(bencher, 64, 64);
    }
}

mod try_recv_empty {
    use super::*;

    #[divan::bench]
    fn shmbus(bencher: divan::Bencher) {
        let bus = ShmBus::new("empty", 64, false);
        let _tx = bus.1.publisher().unwrap();
        let mut rx = bus.1.subscriber();
        bencher.bench_local(|| matches!(black_box(rx.try_recv()), Recv::Empty));
    }

    #[divan::bench]
    fn floor(bencher: divan::Bencher) {
        let ring = floor::Ring::new(SLOTS, 64);
        let next = 0u64;
        bencher.bench_local(|| ring.version(black_box(next)) != 2 * next + 2);
    }
}

/// One thread publishes a message and receives it: a write and a read of the same slot.
mod publish_then_try_recv {
    use super::*;

    #[divan::bench(args = [64])]
    fn shmbus(bencher: divan::Bencher, len: usize) {
        let bus = ShmBus::new("recv", 64, false);
        let mut tx = bus.1.publisher().unwrap();
        let mut rx = bus.1.subscriber();
        let payload = vec![1u8; len];
        bencher.bench_local(|| {
            tx.publish_bytes(&payload).unwrap();
            matches!(black_box(rx.try_recv()), Recv::Message(_))
        });
    }

    #[divan::bench(args = [64])]
    fn floor(bencher: divan::Bencher, len: usize) {
        let ring = floor::Ring::new(SLOTS, 64);
        let payload = vec![1u8; len];
        let mut buf = vec![0u64; 8];
        let mut seq = 0u64;
        bencher.bench_local(|| {
            ring.write(seq, &payload);
            let got = ring.read(seq, black_box(&mut buf));
            seq += 1;
            got.is_some()
        });
    }
}

/// Two threads, one publishing 64-byte messages and one receiving, on a 4096-slot ring:
/// throughput of the pair (the receiver may be lapped; the figure counts published messages).
/// Its floor is not a code path but the cost of moving cache lines between cores, which
/// `shmbus-bench c2c` measures.
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

/// The sum of a message's 8-byte words: the "touch every word" work of the receive benches.
fn word_sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunk")))
        .fold(0, u64::wrapping_add)
}

/// One thread publishes a 1 KiB message and receives it, touching every word: `copy` receives
/// it into the subscriber's buffer (`try_recv`) then sums it, `view` sums it in place
/// (`try_recv_with`), and `publish_only` is the publish alone, the part both share: read
/// `view - publish_only` against `copy - publish_only`.
mod publish_then_recv_1k_sum_words {
    use super::*;

    const LEN: usize = 1024;

    #[divan::bench]
    fn copy(bencher: divan::Bencher) {
        let bus = ShmBus::new("v1k-copy", LEN, false);
        let mut tx = bus.1.publisher().unwrap();
        let mut rx = bus.1.subscriber();
        let payload = vec![3u8; LEN];
        bencher.bench_local(|| {
            tx.publish_bytes(&payload).unwrap();
            match rx.try_recv() {
                Recv::Message(m) => word_sum(black_box(m.bytes())),
                _ => 0,
            }
        });
    }

    #[divan::bench]
    fn view(bencher: divan::Bencher) {
        let bus = ShmBus::new("v1k-view", LEN, false);
        let mut tx = bus.1.publisher().unwrap();
        let mut rx = bus.1.subscriber();
        let payload = vec![3u8; LEN];
        bencher.bench_local(|| {
            tx.publish_bytes(&payload).unwrap();
            rx.try_recv_with(|v| v.words().fold(0, u64::wrapping_add))
                .value()
                .unwrap_or(0)
        });
    }

    #[divan::bench]
    fn publish_only(bencher: divan::Bencher) {
        let bus = ShmBus::new("v1k-pub", LEN, false);
        let mut tx = bus.1.publisher().unwrap();
        let payload = vec![3u8; LEN];
        bencher.bench_local(|| tx.publish_bytes(black_box(&payload)).unwrap());
    }
}

/// A round trip between two threads: this one publishes a 1 KiB message, an echo thread
/// receives it, touching every word (copied out then summed, or summed in place), and answers
/// with the 8-byte sum, which this thread waits for (spinning on `try_recv`). Half of it is the
/// one-way latency of a 1 KiB message received either way, with the 16 cache lines crossing
/// cores. The threads are not pinned: run it on a quiet machine, and read `view` against `copy`.
mod round_trip_1k_sum_words {
    use super::*;

    use std::sync::atomic::{AtomicBool, Ordering};

    const LEN: usize = 1024;

    fn round_trip(bencher: divan::Bencher, tag: &str, in_place: bool) {
        let ping = ShmBus::new(&format!("{tag}-ping"), LEN, false);
        let pong = ShmBus::new(&format!("{tag}-pong"), 8, false);
        let mut tx = ping.1.publisher().unwrap();
        let mut back = pong.1.subscriber();
        let mut echo_rx = ping.1.subscriber();
        let mut echo_tx = pong.1.publisher().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let sum = if in_place {
                        echo_rx
                            .try_recv_with(|v| v.words().fold(0, u64::wrapping_add))
                            .value()
                    } else {
                        match echo_rx.try_recv() {
                            Recv::Message(m) => Some(word_sum(m.bytes())),
                            _ => None,
                        }
                    };
                    match sum {
                        Some(sum) => {
                            echo_tx.publish_bytes(&sum.to_ne_bytes()).unwrap();
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            });
            let payload = vec![3u8; LEN];
            bencher.bench_local(|| {
                tx.publish_bytes(&payload).unwrap();
                loop {
                    if let Recv::Message(m) = back.try_recv() {
                        break black_box(m.seq());
                    }
                    std::hint::spin_loop();
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
    }

    #[divan::bench(sample_count = 20)]
    fn copy(bencher: divan::Bencher) {
        round_trip(bencher, "rt-copy", false);
    }

    #[divan::bench(sample_count = 20)]
    fn view(bencher: divan::Bencher) {
        round_trip(bencher, "rt-view", true);
    }
}
