import pytest

import shmbus


def test_send_receive_exactly_once(name):
    q = shmbus.Queue.create(name, capacity=8, item_size=32)
    assert (q.name, q.capacity, q.item_size, len(q)) == (name, 8, 32, 0)
    assert q.item_type["size"] == 0
    tx = q.sender()
    rx1, rx2 = q.receiver(), q.receiver()
    for i in range(6):
        tx.send(f"job {i}".encode())
    assert len(q) == 6
    got = [rx1.try_recv(), rx2.try_recv(), rx1.recv(timeout=1), rx2.recv(timeout=1),
           rx1.recv(), rx2.recv()]
    assert sorted(got) == sorted(f"job {i}".encode() for i in range(6))
    assert rx1.try_recv() is None and rx2.recv(timeout=0.01) is None
    assert len(q) == 0 and not q.closed


def test_full_and_timeouts(name):
    q = shmbus.Queue.create(name, capacity=2, item_size=8)
    tx = q.sender()
    tx.try_send(b"a")
    tx.send(b"b", timeout=0)
    with pytest.raises(shmbus.Full, match="the queue is full"):
        tx.try_send(b"c")
    with pytest.raises(shmbus.Full, match="the queue is full"):
        tx.send(b"c", timeout=0.02)
    with pytest.raises(shmbus.TooLarge, match=r"the item is larger than a slot \(8 bytes\)"):
        tx.send(b"123456789")
    rx = q.receiver()
    assert rx.recv() == b"a"
    tx.send(bytearray(b"c"), timeout=1)
    assert [rx.recv(), rx.recv()] == [b"b", b"c"]


def test_closed_and_iteration(name):
    q = shmbus.Queue.create(name)
    rx = q.receiver()
    with q.sender() as tx:
        for i in range(3):
            tx.send(bytes([i]))
    assert list(rx) == [b"\x00", b"\x01", b"\x02"]
    assert q.closed
    with pytest.raises(shmbus.Closed):
        rx.recv(timeout=1)
    rx.close()
    with pytest.raises(ValueError, match="receiver is closed"):
        rx.try_recv()


def test_open_errors(name):
    q = shmbus.Queue.create(name)
    ro = shmbus.Queue.open(name, read_only=True)
    with pytest.raises(shmbus.ReadOnly):
        ro.sender()
    with pytest.raises(shmbus.ReadOnly):
        ro.receiver()
    assert shmbus.Queue.open(name).capacity == q.capacity
    shmbus.Bus.create(name + "-b")
    try:
        with pytest.raises(shmbus.WrongKind, match="is a bus, not a queue"):
            shmbus.Queue.open(name + "-b")
    finally:
        shmbus.remove(name + "-b")
    shmbus.Queue.remove(name)
    with pytest.raises(shmbus.NotFound):
        shmbus.Queue.open(name)
    with pytest.raises(shmbus.InvalidConfig):
        shmbus.Queue.create(name, capacity=3)


def test_fileno_then_blocking_recv(name):
    import select

    q = shmbus.Queue.create(name)
    rx = q.receiver()
    fd = rx.fileno()
    tx = q.sender()
    assert rx.try_recv() is None
    tx.send(b"x")
    assert select.select([fd], [], [], 10)[0] == [fd]
    assert rx.recv(timeout=5) == b"x"
    assert rx.recv(timeout=0.01) is None
    tx.send(b"y")
    tx.close()
    assert list(rx) == [b"y"]
    rx.close()
    with pytest.raises(ValueError, match="receiver is closed"):
        rx.fileno()


def test_stall_bound_totals_and_stats(name):
    assert shmbus.Queue.create(name).stall_bound == 1.0
    shmbus.Queue.remove(name)
    assert shmbus.Queue.create(name, stall_bound=None).stall_bound is None
    shmbus.Queue.remove(name)
    with pytest.raises(shmbus.InvalidConfig, match="stall bound of 0"):
        shmbus.Queue.create(name, stall_bound=0)
    with pytest.raises(ValueError, match="stall_bound must be"):
        shmbus.Queue.create(name, stall_bound=-1)
    q = shmbus.Queue.create(name, capacity=2, item_size=8, stall_bound=0.25)
    assert q.stall_bound == pytest.approx(0.25)
    assert shmbus.Queue.open(name).stall_bound == pytest.approx(0.25)
    assert q.totals() == {"skipped": 0, "lost": 0, "passed": 0}
    tx, rx = q.sender(), q.receiver()
    tx.send(b"a")
    tx.send(b"b")
    with pytest.raises(shmbus.Full):
        tx.try_send(b"c")
    assert rx.recv() == b"a"
    assert tx.stats() == {"sent": 2, "full": 1, "lost": 0, "stalls_passed": 0, "resent": 0}
    assert rx.stats() == {"received": 1, "skipped": 0, "malformed": 0, "lost": 0,
                          "stalls_passed": 0}
    assert q.holds() == [], "nobody is between a claim and its completion"
    tx.close()
    with pytest.raises(ValueError, match="closed"):
        tx.stats()


def test_a_multi_producer_bus_with_no_publish_under_way_holds_nothing(name):
    bus = shmbus.Bus.create(name, slots=8, capacity=16, multi_producer=True)
    pub = bus.publisher()
    pub.publish(b"x")
    assert bus.holds() == [], "a published claim is not a hold"
