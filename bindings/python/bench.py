"""Python publish and receive rates on one bus, beside Rust's in the same run.

    python bindings/python/bench.py [--n 1000000] [--size 64] [--trips 20000] [--rust PATH]

Each loop runs in one thread of one process: publish N messages, then publish and receive
each in turn. `--rust` names the release build of bindings/python/tests/rust-peer
(`cargo build --release --manifest-path bindings/python/tests/rust-peer/Cargo.toml`), which runs
the same two loops in Rust; without it only Python's figures are printed. The floor line is the
same Python loop calling a pyo3 getter that does nothing but return a number: what any call
into the extension costs, before shmbus does anything."""

import argparse
import os
import subprocess
import time

import shmbus


def per_msg(n, loop):
    start = time.perf_counter_ns()
    loop(n)
    return (time.perf_counter_ns() - start) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="messages per loop")
    ap.add_argument("--size", type=int, default=64, help="payload bytes")
    ap.add_argument("--trips", type=int, default=20000, help="round trips for the latency")
    ap.add_argument("--rust", help="path of the release rust-peer binary")
    args = ap.parse_args()
    n, msg = args.n, b"\x07" * args.size
    name = f"bench-py-{os.getpid()}"
    bus = shmbus.Bus.create(name, slots=1024, capacity=max(args.size, 8))
    try:
        pub = bus.publisher()

        def floor(k):
            for _ in range(k):
                bus.slots

        def publish(k):
            p = pub.publish
            for _ in range(k):
                p(msg)

        def publish_try_recv(k):
            p, r = pub.publish, sub.try_recv
            for _ in range(k):
                p(msg)
                r()

        def publish_recv(k):
            p, r = pub.publish, sub.recv
            for _ in range(k):
                p(msg)
                r(1.0)

        rows = [("floor: a no-op pyo3 getter", per_msg(n, floor)),
                ("publish", per_msg(n, publish))]
        sub = bus.subscriber()
        rows.append(("publish + try_recv", per_msg(n, publish_try_recv)))
        sub = bus.subscriber()
        rows.append(("publish + recv(timeout=1.0)", per_msg(n, publish_recv)))
        assert sub.received == n, "every message was received"
    finally:
        shmbus.Bus.remove(name)
    if args.rust:
        out = subprocess.run([args.rust, "rate", name + "-rust", str(n), str(args.size)],
                             capture_output=True, text=True, check=True).stdout.split()
        rows += [("Rust publish", float(out[0])), ("Rust publish + try_recv", float(out[1]))]
    print(f"{n} messages of {args.size} B, one thread")
    for label, ns in rows:
        print(f"  {label:<42} {ns:8.1f} ns/msg  {1e9 / ns / 1e6:7.2f} M msgs/s")
    lanes(n, name + "-lanes")
    if args.rust:
        flood(args, name + "-flood")
        latency(args, name, args.trips)


def lanes(n, name):
    """A lanes segment, one lane, the consumer in the same thread: a record copied out
    (`try_recv`), lent in place (`recv_view`, reading its first byte), and 32 at a time
    (`recv_batch`), for a small and a large record."""
    seg = shmbus.Lanes.create(name, lanes=1, lane_bytes=1 << 20)
    try:
        c = seg.consumer()
        p = seg.acquire()
        rows = []
        for size in (64, 16384):
            msg = b"\x07" * size

            def copied(k):
                pub, r = p.publish, c.try_recv
                for _ in range(k):
                    pub(msg)
                    r()

            def lent(k):
                pub, v = p.publish, c.recv_view
                for _ in range(k):
                    pub(msg)
                    with v(0) as (_, view):
                        view[0]

            def batched(k):
                pub, b = p.publish, c.recv_batch
                for _ in range(k // 32):
                    for _ in range(32):
                        pub(msg)
                    b(32)

            k = max(n // (10 if size > 64 else 1), 32)
            rows += [(f"{size} B publish + try_recv (copied)", per_msg(k, copied)),
                     (f"{size} B publish + recv_view (in place)", per_msg(k, lent)),
                     (f"{size} B 32 publish + recv_batch(32)", per_msg(k - k % 32, batched))]
        assert p.dropped == 0, "no record was dropped"
        assert c.stats()["records"] == seg.lane_info()[0]["consumed"]
        p.close()
        c.close()
    finally:
        shmbus.Lanes.remove(name)
    print("lanes: one lane, the consumer in the same thread")
    for label, ns in rows:
        print(f"  {label:<42} {ns:8.1f} ns/record  {1e9 / ns / 1e6:7.2f} M records/s")


def flood(args, name):
    """A Rust process publishes N messages flat out; a Python subscriber in this process reads
    what it can: how many it received per second and how many it lost to laps."""
    bus = shmbus.Bus.create(name, slots=4096, capacity=max(args.size, 8))
    try:
        sub = bus.subscriber(sequence=0)
        proc = subprocess.Popen([args.rust, "flood", name, str(args.n), str(args.size)],
                                stdout=subprocess.PIPE, text=True)
        received = lost = 0
        start = last = None
        while True:
            try:
                if sub.recv(timeout=1.0) is not None:
                    received += 1
                    last = time.perf_counter_ns()
            except shmbus.Lapped as lap:
                lost += lap.lost
                last = time.perf_counter_ns()
            except shmbus.Closed:
                # Before the publisher attached, or after it left: only the latter ends it.
                if proc.poll() is not None:
                    break
            if start is None and last is not None:
                start = last  # from the first message or lap: process start-up left out
        elapsed = max(last - start, 1)
        publish_ns = float(proc.stdout.read())
    finally:
        shmbus.Bus.remove(name)
    assert received + lost == args.n, (received, lost)
    print(f"Rust publisher process flat out ({publish_ns:.1f} ns/publish), Python subscriber "
          f"(4096 slots):")
    print(f"  received {received} of {args.n} ({received / args.n:.1%}) in {elapsed / 1e9:.2f} s, "
          f"{received / elapsed * 1e3:.2f} M msgs/s; lost {lost} to laps, each reported exactly")


def latency(args, name, trips):
    """One-way latency (half a round trip through a Rust echo process, both ends spinning) from
    Python and from Rust, in the same run against the same echo."""
    ping, pong = name + "-ping", name + "-pong"
    shmbus.Bus.create(ping, slots=1024, capacity=max(args.size, 8))
    shmbus.Bus.create(pong, slots=1024, capacity=max(args.size, 8))
    echo = subprocess.Popen([args.rust, "echo", ping, pong, str(2 * trips)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout.readline().strip() == "ready"
        sub = shmbus.Bus.open(pong).subscriber()
        msg = b"\x07" * args.size
        one_way = []
        with shmbus.Bus.open(ping).publisher() as pub:
            publish, poll, clock = pub.publish, sub.try_recv, time.perf_counter_ns
            for _ in range(trips):
                start = clock()
                publish(msg)
                while poll() is None:
                    pass
                one_way.append((clock() - start) // 2)
        one_way.sort()
        rust = subprocess.run([args.rust, "ping", ping, pong, str(trips), str(args.size)],
                              capture_output=True, text=True, check=True).stdout.split()
        echo.wait(timeout=60)
    finally:
        if echo.poll() is None:
            echo.kill()
        shmbus.Bus.remove(ping)
        shmbus.Bus.remove(pong)
    py = (one_way[len(one_way) // 2], one_way[int((len(one_way) - 1) * 0.99)])
    print(f"one-way latency, {args.size} B, half a round trip through a Rust echo process "
          f"({trips} trips, both ends spinning):")
    print(f"  Python publish -> Rust -> Python try_recv   p50 {py[0]:6d} ns  p99 {py[1]:6d} ns")
    print(f"  Rust publish -> Rust -> Rust try_recv       p50 {int(rust[0]):6d} ns  p99 {int(rust[1]):6d} ns")


if __name__ == "__main__":
    main()
