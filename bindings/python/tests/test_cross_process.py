"""Python and Rust processes on the same segments: the Rust side is the `shmbus` inspector
(tools/shmbus), which publishes, tails, pushes, pops and sets through the Rust library."""

import json
import subprocess
import time

import shmbus


def test_python_publisher_rust_subscriber(name, cli):
    bus = shmbus.Bus.create(name, slots=256, capacity=64)
    tail = subprocess.Popen(
        [cli.path, "tail", name, "--from", "0", "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with bus.publisher() as pub:
            for i in range(50):
                pub.publish(f"py {i}".encode())
        lines = [json.loads(tail.stdout.readline()) for _ in range(50)]
    finally:
        tail.terminate()
        tail.wait(timeout=30)
    assert [(m["seq"], m["text"]) for m in lines] == [(i, f"py {i}") for i in range(50)]


def test_rust_publisher_python_subscriber(name, cli):
    bus = shmbus.Bus.create(name, slots=256, capacity=64)
    # From sequence 0: the subscriber sees every message whenever it starts reading.
    sub = bus.subscriber(sequence=0)
    cli("publish", name, *[f"rust {i}" for i in range(50)])
    # The publisher has exited: iteration ends after the last message.
    assert list(sub) == [(i, f"rust {i}".encode()) for i in range(50)]


def test_rust_publisher_python_subscriber_waiting(name, cli):
    bus = shmbus.Bus.create(name, slots=256, capacity=64)
    sub = bus.subscriber()
    pub = subprocess.Popen([cli.path, "publish", name], stdin=subprocess.PIPE, text=True)
    try:
        # Until the Rust publisher has attached: before that the bus reads closed (and the
        # receive would raise Closed at once instead of waiting).
        deadline = time.monotonic() + 30
        while not bus.has_producers and time.monotonic() < deadline:
            time.sleep(0.001)
        pub.stdin.write("first\n")
        pub.stdin.flush()
        # A blocking receive in Python woken by a Rust publisher in another process.
        assert sub.recv(timeout=30) == (0, b"first")
        pub.stdin.write("second\n")
        pub.stdin.close()
        assert sub.recv(timeout=30) == (1, b"second")
    finally:
        pub.wait(timeout=30)


def test_lap_seen_from_python_on_a_rust_published_bus(name, cli):
    bus = shmbus.Bus.create(name, slots=8, capacity=16)
    sub = bus.subscriber(sequence=0)
    cli("publish", name, *[str(i) for i in range(20)])
    try:
        sub.recv(timeout=5)
        raise AssertionError("expected a lap")
    except shmbus.Lapped as e:
        assert e.lost == 12
    assert [seq for seq, _ in sub] == list(range(12, 20))


def test_queue_both_ways(name, cli):
    q = shmbus.Queue.create(name, capacity=64, item_size=32)
    with q.sender() as tx:
        for i in range(10):
            tx.send(f"from py {i}".encode())
    popped = [json.loads(line)["text"] for line in cli("pop", name, "-n", "10", "--json").splitlines()]
    assert popped == [f"from py {i}" for i in range(10)]
    cli("push", name, "a", "b", "c")
    rx = q.receiver()
    assert [rx.recv(timeout=5) for _ in range(3)] == [b"a", b"b", b"c"]
    assert rx.try_recv() is None


def test_records_both_ways(name, cli):
    r = shmbus.Records.create(name, bytes=65536)
    sub = r.subscriber(sequence=0)
    cli("publish", name, "short", "x" * 5000)
    assert list(sub) == [(0, 0, b"short"), (1, 0, b"x" * 5000)]
    with r.publisher() as pub:
        pub.publish(b"from python")
    out = [json.loads(line) for line in cli("tail", name, "--from", "oldest", "--json").splitlines()]
    assert [(m["seq"], m["text"]) for m in out][-1] == (2, "from python")


def test_board_both_ways(name, cli):
    b = shmbus.Board.create(name, cells=3, value_size=32, keys=["hip", "knee"])
    cli("set", name, "knee", "angle=0.25")
    assert b["knee"] == b"angle=0.25"
    b["hip"] = b"angle=1.5"
    cells = json.loads(cli("board", name, "--json"))
    assert [(c["key"], c["value"], c["version"]) for c in cells] == [
        ("hip", "angle=1.5", 1), ("knee", "angle=0.25", 1), (None, None, 0)]


def test_tail_rate_example(name):
    """examples/tail_rate.py reads a bus that this process publishes to."""
    import sys
    import threading
    from pathlib import Path

    bus = shmbus.Bus.create(name, slots=1024)
    pub = bus.publisher()
    example = Path(__file__).resolve().parents[1] / "examples" / "tail_rate.py"
    proc = subprocess.Popen([sys.executable, str(example), name, "--interval", "0.2", "--count", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def publish():
        while not stop.is_set():
            pub.publish(b"x" * 32)
            stop.wait(0.001)

    t = threading.Thread(target=publish)
    t.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    # The last two intervals saw the publisher's messages (the first may start before it).
    assert all(int(line.split()[0]) > 0 and "msg/s" in line for line in lines[1:])
    missing = subprocess.run([sys.executable, str(example), name + "-missing", "--count", "1"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
