"""Lanes: a lane per producer, one consumer; records as (lane, bytes), closes as LaneClosed."""

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time

import pytest

import shmbus


def test_create_open_and_properties(name):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=8192)
    assert (lanes.name, lanes.lanes, lanes.lane_bytes, lanes.max_record) == (name, 4, 8192, 8176)
    assert not lanes.has_consumer and lanes.consumer_pid is None and not lanes.read_only
    assert repr(lanes) == f'<shmbus.Lanes "{name}": 4 lanes of 8192 bytes>'
    again = shmbus.Lanes.open(name)
    assert (again.lanes, again.lane_bytes) == (4, 8192)
    ro = shmbus.Lanes.open(name, read_only=True)
    assert ro.read_only
    with pytest.raises(shmbus.ReadOnly):
        ro.acquire()
    with pytest.raises(shmbus.ReadOnly):
        ro.consumer()
    c = lanes.consumer()
    assert again.has_consumer and again.consumer_pid == os.getpid()
    c.close()
    assert c.closed and not lanes.has_consumer
    shmbus.Lanes.remove(name)
    with pytest.raises(shmbus.NotFound):
        shmbus.Lanes.open(name)


def test_defaults(name):
    lanes = shmbus.Lanes.create(name)
    assert (lanes.lanes, lanes.lane_bytes, lanes.max_record) == (64, 65536, 65520)


def test_publish_receive_and_close_events(name):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=4096)
    c = lanes.consumer()
    assert c.lanes == 4
    a, b = lanes.acquire(), lanes.acquire()
    assert (a.lane, b.lane) == (0, 1)
    assert a.publish(b"from a") is True
    assert b.publish(bytearray(3000)) is True
    assert b.publish(memoryview(b"second of b")) is True
    b.close()
    assert b.closed and b.lane == 1 and b.dropped == 0
    got = []
    while (e := c.try_recv()) is not None:
        got.append(e)
    # Lanes in turn, each lane's records in order, then the close after the lane's last record.
    assert got == [(0, b"from a"), (1, bytes(3000)), (1, b"second of b"),
                   shmbus.LaneClosed(1)]
    closed = got[-1]
    assert (closed.lane, closed.dropped, closed.producer_died) == (1, 0, False)
    assert repr(closed) == "LaneClosed(lane=1, dropped=0, producer_died=False)"
    assert c.stats() == {"records": 3, "bytes": 6 + 3000 + 11, "closed": 1}
    assert c.recv(timeout=0.01) is None
    with pytest.raises(ValueError, match="lane publisher is closed"):
        b.publish(b"x")
    a.close()
    assert c.recv(timeout=5) == shmbus.LaneClosed(0)


# `match` is Python 3.10 syntax; the wheel serves 3.9 too, so the test is compiled where it can be.
MATCH_TEST = """
def events(c):
    kinds = []
    for _ in range(2):
        match c.recv(timeout=5):
            case (lane, data):
                kinds.append(("record", lane, data))
            case shmbus.LaneClosed(lane, dropped, died):
                kinds.append(("closed", lane, dropped, died))
    return kinds
"""


@pytest.mark.skipif(sys.version_info < (3, 10), reason="match needs Python 3.10")
def test_events_match_patterns(name):
    lanes = shmbus.Lanes.create(name, lanes=1, lane_bytes=4096)
    c = lanes.consumer()
    with lanes.acquire() as p:
        p.publish(b"r")
    scope = {"shmbus": shmbus}
    exec(MATCH_TEST, scope)
    assert scope["events"](c) == [("record", 0, b"r"), ("closed", 0, 0, False)]


def test_full_lane_drops_and_counts(name):
    lanes = shmbus.Lanes.create(name, lanes=1, lane_bytes=4096)
    c = lanes.consumer()
    p = lanes.acquire()
    assert p.free_bytes == 4088 and p.max_record == 4080
    record = bytes(1000)  # 1008 bytes in the lane with its header: four fit in 4096
    pushed = [p.publish(record) for _ in range(6)]
    assert pushed == [True] * 4 + [False] * 2
    assert p.dropped == 2
    assert lanes.lane_info()[0]["dropped"] == 2
    assert len(c.recv_batch(10)) == 4
    assert p.publish(record) is True  # room again once the consumer took them
    p.close()
    assert p.dropped == 2
    assert c.recv_batch(10) == [(0, record), shmbus.LaneClosed(0, dropped=2)]


def test_publish_with_a_timeout_waits_for_room(name):
    lanes = shmbus.Lanes.create(name, lanes=1, lane_bytes=4096)
    c = lanes.consumer()
    p = lanes.acquire()
    record = bytes(1000)  # four fit
    assert [p.publish(record) for _ in range(4)] == [True] * 4
    started = time.monotonic()
    assert p.publish(record, timeout=0.05) is False  # stays full: dropped at the deadline
    assert time.monotonic() - started >= 0.05
    assert p.dropped == 1
    with pytest.raises(ValueError, match="timeout"):
        p.publish(record, timeout=-1)
    results = []
    waiter = threading.Thread(target=lambda: results.append(p.publish(b"waited", timeout=None)))
    waiter.start()
    # Whenever the waiter gets to its wait, taking one record makes room for it.
    assert c.recv(timeout=10) == (0, record)
    waiter.join(timeout=10)
    assert results == [True] and p.dropped == 1
    assert c.recv_batch(10) == [(0, record)] * 3 + [(0, b"waited")]


def test_errors(name):
    with pytest.raises(shmbus.InvalidConfig, match="lanes"):
        shmbus.Lanes.create(name, lanes=0)
    with pytest.raises(shmbus.InvalidConfig):
        shmbus.Lanes.create(name, lane_bytes=1000)
    with pytest.raises(shmbus.InvalidName):
        shmbus.Lanes.create("no/slash")
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    with pytest.raises(shmbus.AlreadyExists):
        shmbus.Lanes.create(name)
    # Full pool: LanesFull, which is a ProducerExists.
    p1, p2 = lanes.acquire(), lanes.acquire()
    with pytest.raises(shmbus.LanesFull, match="has no free lane: all 2 are held") as e:
        lanes.acquire()
    assert isinstance(e.value, shmbus.ProducerExists)
    # Too large: nothing written, nothing counted.
    with pytest.raises(shmbus.TooLarge) as e:
        p1.publish(bytes(4089))
    assert isinstance(e.value, ValueError)
    assert p1.dropped == 0 and lanes.lane_info()[0]["published"] == 0
    with pytest.raises(TypeError):
        p1.publish("text")
    # Second consumer.
    c = lanes.consumer()
    with pytest.raises(shmbus.ConsumerExists, match="already has a live consumer"):
        lanes.consumer()
    with pytest.raises(shmbus.ConsumerExists):
        shmbus.Lanes.open(name).consumer()
    with pytest.raises(shmbus.InvalidConfig, match="there is no lane 2"):
        c.recv_lane_batch(2)
    with pytest.raises(ValueError, match="timeout"):
        c.recv(timeout=-1)
    # A closed lane goes back to the pool only once the consumer has drained it.
    p2.close()
    with pytest.raises(shmbus.LanesFull):
        lanes.acquire()
    assert c.recv(timeout=5) == shmbus.LaneClosed(1)
    assert lanes.acquire().lane == 1
    c.close()
    with pytest.raises(ValueError, match="lane consumer is closed"):
        c.try_recv()
    with pytest.raises(ValueError, match="lane consumer is closed"):
        c.fileno()
    # Another kind.
    q = name + "-q"
    shmbus.Queue.create(q)
    try:
        with pytest.raises(shmbus.WrongKind):
            shmbus.Lanes.open(q)
    finally:
        shmbus.remove(q)
    with pytest.raises(shmbus.WrongKind):
        shmbus.Bus.open(name)


def test_new_consumer_goes_on_where_the_last_left_off(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    p = lanes.acquire()
    for i in range(4):
        p.publish(bytes([i]))
    with lanes.consumer() as c:
        assert c.recv(timeout=5) == (0, b"\x00")
        assert c.recv_batch(1) == [(0, b"\x01")]
    assert lanes.lane_info()[0]["consumed"] == 2
    with lanes.consumer() as c:
        assert c.recv_batch() == [(0, b"\x02"), (0, b"\x03")]


def test_batches(name):
    lanes = shmbus.Lanes.create(name, lanes=3, lane_bytes=4096)
    c = lanes.consumer()
    ps = [lanes.acquire() for _ in range(3)]
    for i in range(40):
        for p in ps:
            p.publish(f"{p.lane}:{i}".encode())
    ps[2].close()
    assert c.recv_batch(0) == []
    # One lane alone.
    lane1 = c.recv_lane_batch(1, max=5)
    assert lane1 == [(1, f"1:{i}".encode()) for i in range(5)]
    # Round-robin from the lane after the one read last, at most 32 of a lane per turn, each
    # lane's close after its last record.
    got = c.recv_batch(1000)

    def run(lane, first, end):
        return [(lane, f"{lane}:{i}".encode()) for i in range(first, end)]

    assert got == (run(2, 0, 32) + run(0, 0, 32) + run(1, 5, 37)
                   + run(2, 32, 40) + [shmbus.LaneClosed(2)] + run(0, 32, 40) + run(1, 37, 40))
    assert c.recv_batch(10) == []
    assert c.recv_batch(10, timeout=0.01) == []
    assert lanes.lane_info()[0]["consumed"] == 40


def test_lane_info(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    p = lanes.acquire()
    p.publish(b"12345")
    info = lanes.lane_info()
    assert [i["lane"] for i in info] == [0, 1]
    assert info[0] == {"lane": 0, "in_use": True, "closing": False,
                       "pid": os.getpid(), "pending_bytes": 16,
                       "published": 1, "consumed": 0, "dropped": 0}
    assert info[1]["pid"] == 0 and not info[1]["in_use"]
    p.close()
    assert lanes.lane_info()[0]["closing"]


def test_iteration_and_fileno(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    c = lanes.consumer()
    fd = c.fileno()
    assert fd == c.fileno() and fd >= 0
    assert c.try_recv() is None  # nothing there: the descriptor is armed and not readable
    assert select.select([fd], [], [], 0)[0] == []
    with lanes.acquire() as p:
        p.publish(b"one")
        p.publish(b"two")
    assert select.select([fd], [], [], 30)[0] == [fd]
    got = []
    for e in c:
        got.append(e)
        if isinstance(e, shmbus.LaneClosed):
            break
    assert got == [(0, b"one"), (0, b"two"), shmbus.LaneClosed(0)]
    assert c.try_recv() is None  # drained: armed again
    assert select.select([fd], [], [], 0)[0] == []
    with lanes.acquire() as p:
        p.publish(b"three")
    assert select.select([fd], [], [], 30)[0] == [fd]
    assert c.recv(timeout=5) == (0, b"three")


def test_recv_async(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    c = lanes.consumer()
    p = lanes.acquire()

    async def main():
        task = asyncio.create_task(c.recv_async())
        await asyncio.sleep(0)  # let it arm and wait (nothing published yet)
        assert not task.done()
        p.publish(b"hello")
        first = await asyncio.wait_for(task, 30)
        # Cancelled with nothing there, then with a record waiting: nothing is lost.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.recv_async(), 0.05)
        p.publish(b"kept")
        task = asyncio.create_task(c.recv_async())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        second = await asyncio.wait_for(c.recv_async(), 30)
        p.close()
        third = await asyncio.wait_for(c.recv_async(), 30)
        return first, second, third

    assert asyncio.run(main()) == ((0, b"hello"), (0, b"kept"), shmbus.LaneClosed(0))


def test_blocking_recv_in_one_thread_while_others_publish(name):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=1 << 16)
    c = lanes.consumer()
    n, producers = 300, 3
    got = []

    def consume():
        closed = 0
        while closed < producers:
            e = c.recv(timeout=30)
            assert e is not None
            if isinstance(e, shmbus.LaneClosed):
                closed += 1
            else:
                got.append(e)

    def produce(k):
        with lanes.acquire() as p:
            for i in range(n):
                assert p.publish(f"{k} {i}".encode())

    t = threading.Thread(target=consume)
    t.start()
    ps = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for x in ps:
        x.start()
    for x in ps:
        x.join(timeout=60)
    t.join(timeout=60)
    assert not t.is_alive()
    # Each producer's records in order, whatever lane it had.
    by_producer = {}
    for _, data in got:
        k, i = data.decode().split()
        by_producer.setdefault(int(k), []).append(int(i))
    assert by_producer == {k: list(range(n)) for k in range(producers)}


DIE_SCRIPT = r"""
import os, sys, shmbus
p = shmbus.Lanes.open(sys.argv[1]).acquire()
p.publish(b"last words")
os._exit(0)   # no close: the consumer finds the lane's producer dead
"""


def test_dead_producer_is_reported(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    c = lanes.consumer()
    subprocess.run([sys.executable, "-c", DIE_SCRIPT, name], check=True, timeout=60)
    assert c.recv(timeout=30) == (0, b"last words")
    closed = c.recv(timeout=30)
    assert closed == shmbus.LaneClosed(0, producer_died=True)
    assert c.sweep() == 0
    assert lanes.acquire().lane == 0


def test_python_producer_rust_consumer(name, cli):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=4096)
    with lanes.acquire() as a, lanes.acquire() as b:
        for i in range(3):
            a.publish(f"a {i}".encode())
            b.publish(bytes([0xff, i]))
    out = cli("pop", name, "-n", "10", "--json")
    got = [json.loads(line) for line in out.splitlines()]
    # One record of each lane in turn, each lane's in order.
    assert [(m["lane"], m.get("text"), m.get("hex")) for m in got] == [
        r for i in range(3) for r in ((0, f"a {i}", None), (1, None, f"ff{i:02x}"))
    ]
    info = lanes.lane_info()
    assert [(i["published"], i["consumed"]) for i in info[:2]] == [(3, 3), (3, 3)]


def test_rust_producer_python_consumer(name, cli):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=4096)
    c = lanes.consumer()
    cli("publish", name, *[f"rust {i}" for i in range(20)])
    got = c.recv_batch(100, timeout=30)
    assert got == [(0, f"rust {i}".encode()) for i in range(20)] + [shmbus.LaneClosed(0)]


def test_rust_producer_wakes_a_waiting_python_consumer(name, cli):
    lanes = shmbus.Lanes.create(name, lanes=4, lane_bytes=4096)
    c = lanes.consumer()
    pub = subprocess.Popen([cli.path, "publish", name], stdin=subprocess.PIPE, text=True)
    try:
        pub.stdin.write("first\n")
        pub.stdin.flush()
        assert c.recv(timeout=30) == (0, b"first")
        pub.stdin.write("second\n")
        pub.stdin.close()
        assert c.recv(timeout=30) == (0, b"second")
        assert c.recv(timeout=30) == shmbus.LaneClosed(0)
    finally:
        pub.wait(timeout=30)


def test_recv_view_reads_in_place_and_acknowledges_after_the_block(name):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    c = lanes.consumer()
    p = lanes.acquire()
    p.publish(b"A" * 2000)
    with c.recv_view(timeout=5) as (lane, view):
        assert lane == 0 and isinstance(view, memoryview) and view.readonly
        assert len(view) == 2000 and view[0] == ord("A")
        # Not acknowledged while the block runs: the producer cannot reuse those bytes, and its
        # publishes that need them drop instead of overwriting what we read.
        assert lanes.lane_info()[0]["consumed"] == 0
        assert p.publish(b"B" * 1500) is True
        assert p.publish(b"C" * 1500) is False
        assert bytes(view) == b"A" * 2000
        with pytest.raises(BufferError, match="still open"):
            c.try_recv()
        with pytest.raises(BufferError, match="still open"):
            c.recv_batch(5)
    with pytest.raises(ValueError):
        view[0]  # released at the end of the block
    assert lanes.lane_info()[0]["consumed"] == 1
    assert p.publish(b"D" * 1500) is True  # the record's bytes are the producer's again
    assert c.recv_batch(5) == [(0, b"B" * 1500), (0, b"D" * 1500)]
    # A close, and nothing (the value is None at the timeout).
    p.close()
    with c.recv_view(timeout=5) as event:
        assert event == shmbus.LaneClosed(0, dropped=1)
    with c.recv_view(timeout=0.01) as event:
        assert event is None
    v = c.recv_view(timeout=0)
    assert v.value is None
    v.release()
    # Empty records too.
    with lanes.acquire() as p:
        p.publish(b"")
    with c.recv_view(timeout=5) as (lane, view):
        assert (lane, bytes(view)) == (0, b"")


def test_recv_view_refuses_to_acknowledge_while_a_view_lives(name):
    import pickle

    lanes = shmbus.Lanes.create(name, lanes=1, lane_bytes=4096)
    c = lanes.consumer()
    p = lanes.acquire()
    p.publish(b"first")
    p.publish(b"second")
    # A slice outlives the block: the record stays lent until it is gone.
    with pytest.raises(BufferError, match="outlives its with block"):
        with c.recv_view(timeout=5) as (_, view):
            part = view[1:3]
    assert bytes(part) == b"ir"  # still the record's bytes, never the producer's
    with pytest.raises(BufferError, match="outlives"):
        c.try_recv()
    with pytest.raises(BufferError, match="outlives"):
        c.close()
    assert not c.closed and lanes.lane_info()[0]["consumed"] == 0
    del part
    assert c.try_recv() == (0, b"second")
    assert lanes.lane_info()[0]["consumed"] == 2
    # An object that exported the buffer.
    p.publish(b"third")
    with pytest.raises(BufferError, match="still uses the memoryview"):
        with c.recv_view(timeout=5) as (_, view):
            held = pickle.PickleBuffer(view)
    with pytest.raises(BufferError, match="still uses"):
        c.recv(timeout=0)
    del held
    assert c.recv(timeout=0) is None
    assert lanes.lane_info()[0]["consumed"] == 3
    # A view never entered nor released: acknowledged at the next receive once it is gone.
    p.publish(b"fourth")
    p.publish(b"fifth")
    c.recv_view(timeout=5)
    assert c.try_recv() == (0, b"fifth")
    # The consumer's iteration, and a memoryview kept through .value while open.
    p.publish(b"sixth")
    v = c.recv_view(timeout=5)
    lane, view = v.value
    with pytest.raises(BufferError, match="still open"):
        next(iter(c))
    v.release()
    with pytest.raises(ValueError):
        bytes(view)
    c.close()


VIEW_KEPT_SCRIPT = r"""
import sys, shmbus
lanes = shmbus.Lanes.open(sys.argv[1])
c = lanes.consumer()
with lanes.acquire() as p:
    p.publish(b"kept past the consumer")
try:
    with c.recv_view(timeout=5) as (_, view):
        kept = view[5:]
except BufferError:
    pass
del c, view   # the consumer is collected while `kept` still reads its mapping
import gc; gc.collect()
assert lanes.has_consumer   # so it stays attached (and mapped) for the process's life
try:
    lanes.consumer()
except shmbus.ConsumerExists:
    pass
print(bytes(kept).decode())
"""


def test_a_view_outliving_its_consumer_keeps_the_mapping(name):
    shmbus.Lanes.create(name, lanes=1, lane_bytes=4096)
    r = subprocess.run([sys.executable, "-c", VIEW_KEPT_SCRIPT, name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "past the consumer"


def _thread_state(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("with_fd", [False, True])
def test_recv_view_waits_for_a_record(name, with_fd):
    lanes = shmbus.Lanes.create(name, lanes=2, lane_bytes=4096)
    c = lanes.consumer()
    if with_fd:
        c.fileno()  # the consumer waits on its descriptor from now on
    p = lanes.acquire()
    me = threading.get_native_id()

    def publish_once_the_consumer_sleeps():
        deadline = time.monotonic() + 30
        while _thread_state(me) != "S" and time.monotonic() < deadline:
            time.sleep(0.001)
        p.publish(b"woke")

    t = threading.Thread(target=publish_once_the_consumer_sleeps)
    t.start()
    try:
        with c.recv_view(timeout=30) as (lane, view):
            assert (lane, bytes(view)) == (0, b"woke")
    finally:
        t.join(timeout=30)
    assert lanes.lane_info()[0]["consumed"] == 1


def test_lane_closed_value(name):
    a = shmbus.LaneClosed(3, dropped=2, producer_died=True)
    assert (a.lane, a.dropped, a.producer_died) == (3, 2, True)
    assert a == shmbus.LaneClosed(3, 2, True) and a != shmbus.LaneClosed(3, 2)
    assert hash(a) == hash(shmbus.LaneClosed(3, 2, True))
    assert shmbus.LaneClosed.__match_args__ == ("lane", "dropped", "producer_died")
    assert repr(shmbus.LaneClosed(1)) == "LaneClosed(lane=1, dropped=0, producer_died=False)"
