import array

import pytest

import shmbus


def test_create_open_properties(name):
    bus = shmbus.Bus.create(name, slots=16, capacity=100)
    assert (bus.name, bus.slots, bus.producer_mode, bus.read_only) == (name, 16, "single", False)
    # The capacity is rounded up to whole 8-byte words at most; never below what was asked.
    assert bus.capacity >= 100
    assert bus.message_type == {"name": "bytes", "size": 0, "align": 1}
    assert bus.cursor == 0 and not bus.has_producers
    ro = shmbus.Bus.open(name, read_only=True)
    assert ro.read_only and ro.slots == 16
    assert name in repr(bus)
    multi = shmbus.Bus.create(name + "-m", multi_producer=True)
    try:
        assert multi.producer_mode == "multi"
        a, b = multi.publisher(), multi.publisher()
        assert (a.publish(b"a"), b.publish(b"b")) == (0, 1)
    finally:
        shmbus.Bus.remove(name + "-m")


def test_stall_bound_is_set_at_create_and_refused_where_it_cannot_apply(name):
    assert shmbus.Bus.create(name, multi_producer=True).stall_bound == 1.0
    shmbus.Bus.remove(name)
    bus = shmbus.Bus.create(name, multi_producer=True, stall_bound=0.02)
    assert bus.stall_bound == pytest.approx(0.02)
    assert shmbus.Bus.open(name).stall_bound == pytest.approx(0.02)
    shmbus.Bus.remove(name)
    assert shmbus.Bus.create(name, multi_producer=True, stall_bound=None).stall_bound is None
    shmbus.Bus.remove(name)
    assert shmbus.Bus.create(name).stall_bound is None
    shmbus.Bus.remove(name)
    with pytest.raises(shmbus.InvalidConfig, match="multi-producer bus only"):
        shmbus.Bus.create(name, stall_bound=1.0)
    with pytest.raises(shmbus.InvalidConfig, match="stall bound of 0"):
        shmbus.Bus.create(name, multi_producer=True, stall_bound=0)
    with pytest.raises(ValueError, match="stall_bound must be"):
        shmbus.Bus.create(name, multi_producer=True, stall_bound=-1)
    with pytest.raises(TypeError):
        shmbus.Bus.create(name, multi_producer=True, stall_bound="1s")


def test_publish_any_buffer_and_receive_in_order(name):
    bus = shmbus.Bus.create(name, slots=16, capacity=64)
    pub = bus.publisher()
    sub = bus.subscriber()
    payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"),
                array.array("I", [1, 2]), b""]
    seqs = [pub.publish(p) for p in payloads]
    assert seqs == [0, 1, 2, 3, 4]
    assert bus.has_producers and bus.cursor == 5 and pub.published == 5 and pub.dropped == 0
    got = [sub.try_recv() for _ in payloads]
    assert got == [(i, bytes(p)) for i, p in enumerate(payloads)]
    assert sub.try_recv() is None
    assert (sub.next_seq, sub.received, sub.lost, sub.laps) == (5, 5, 0, 0)


def test_recv_waits_and_times_out(name):
    bus = shmbus.Bus.create(name)
    pub = bus.publisher()
    sub = bus.subscriber()
    assert sub.recv(timeout=0.01) is None
    assert sub.recv(0) is None
    pub.publish(b"x")
    assert sub.recv(timeout=5) == (0, b"x")
    pub.publish(b"y")
    assert sub.recv() == (1, b"y")


def test_start_positions(name):
    bus = shmbus.Bus.create(name, slots=8)
    pub = bus.publisher()
    for i in range(5):
        pub.publish(bytes([i]))
    assert bus.subscriber("oldest").try_recv() == (0, b"\x00")
    assert bus.subscriber(last=2).try_recv() == (3, b"\x03")
    assert bus.subscriber(sequence=4).try_recv() == (4, b"\x04")
    assert bus.subscriber().try_recv() is None
    with pytest.raises(ValueError, match="start must be"):
        bus.subscriber("newest-ish")
    with pytest.raises(ValueError, match="not both"):
        bus.subscriber(last=1, sequence=1)
    with pytest.raises(ValueError, match="lap_policy"):
        bus.subscriber(lap_policy="never")


def test_lap_reports_exact_loss_and_subscriber_goes_on(name):
    bus = shmbus.Bus.create(name, slots=4)
    pub = bus.publisher()
    sub = bus.subscriber(sequence=0)
    for i in range(10):
        pub.publish(str(i).encode())
    with pytest.raises(shmbus.Lapped) as e:
        sub.try_recv()
    # Ten published into four slots: 0..5 are overwritten, 6..9 intact.
    assert e.value.lost == 6
    assert "6 messages lost" in str(e.value)
    assert isinstance(e.value, shmbus.ShmbusError)
    assert [sub.try_recv() for _ in range(4)] == [(i, str(i).encode()) for i in range(6, 10)]
    assert (sub.received, sub.lost, sub.laps) == (4, 6, 1)


def test_lap_policy_newest(name):
    bus = shmbus.Bus.create(name, slots=4)
    pub = bus.publisher()
    sub = bus.subscriber(sequence=0, lap_policy="newest")
    for i in range(10):
        pub.publish(str(i).encode())
    with pytest.raises(shmbus.Lapped) as e:
        sub.recv(timeout=1)
    assert e.value.lost == 9
    assert sub.recv(timeout=1) == (9, b"9")


def test_closed_when_publisher_detaches_and_iteration_ends(name):
    bus = shmbus.Bus.create(name)
    sub = bus.subscriber("oldest")
    with bus.publisher() as pub:
        for i in range(3):
            pub.publish(bytes([i]))
    with pytest.raises(ValueError, match="publisher is closed"):
        pub.publish(b"late")
    assert list(sub) == [(0, b"\x00"), (1, b"\x01"), (2, b"\x02")]
    with pytest.raises(shmbus.Closed, match="no producer is attached"):
        sub.recv(timeout=1)
    with pytest.raises(shmbus.Closed):
        sub.try_recv()


def test_iteration_raises_lapped_then_goes_on(name):
    bus = shmbus.Bus.create(name, slots=2)
    pub = bus.publisher()
    sub = bus.subscriber(sequence=0)
    for i in range(5):
        pub.publish(bytes([i]))
    pub.close()
    with pytest.raises(shmbus.Lapped) as e:
        next(iter(sub))
    assert e.value.lost == 3
    assert list(sub) == [(3, b"\x03"), (4, b"\x04")]


def test_errors_are_exceptions_with_the_library_text(name):
    bus = shmbus.Bus.create(name, slots=8, capacity=64)
    pub = bus.publisher()
    with pytest.raises(shmbus.TooLarge, match=r"^message is 65 bytes, at most 64 fit$"):
        pub.publish(b"x" * 65)
    with pytest.raises(shmbus.ProducerExists, match="single-producer and already has a live producer"):
        bus.publisher()
    with pytest.raises(shmbus.AlreadyExists, match=f'segment "{name}" already exists'):
        shmbus.Bus.create(name)
    with pytest.raises(FileExistsError):
        shmbus.Bus.create(name)
    with pytest.raises(shmbus.NotFound, match=r'segment "no-such-bus-x" not found \(no /dev/shm/shmbus.no-such-bus-x\)'):
        shmbus.Bus.open("no-such-bus-x")
    with pytest.raises(FileNotFoundError):
        shmbus.Bus.open("no-such-bus-x")
    with pytest.raises(shmbus.ReadOnly, match="was opened read-only and cannot be written"):
        shmbus.Bus.open(name, read_only=True).publisher()
    with pytest.raises(shmbus.InvalidName, match="invalid segment name"):
        shmbus.Bus.create("bad/name")
    with pytest.raises(shmbus.InvalidConfig, match="invalid configuration"):
        shmbus.Bus.create(name + "-3", slots=3)
    with pytest.raises(TypeError):
        pub.publish("a str is not bytes")
    with pytest.raises(TypeError):
        pub.publish(5)
    with pytest.raises(ValueError, match="timeout must be"):
        bus.subscriber().recv(timeout=-1)
    with pytest.raises(ValueError, match="timeout must be"):
        bus.subscriber().recv(timeout=float("nan"))


def test_wrong_kind(name):
    shmbus.Queue.create(name)
    with pytest.raises(shmbus.WrongKind, match=f'"{name}" is a queue, not a bus'):
        shmbus.Bus.open(name)


def test_not_a_shmbus_segment(name):
    with open(f"/dev/shm/shmbus.{name}", "wb") as f:
        f.write(b"\x01" * 8192)
    with pytest.raises(shmbus.Refused, match="not a shmbus segment"):
        shmbus.Bus.open(name)


def test_remove(name):
    shmbus.Bus.create(name)
    shmbus.Bus.remove(name)
    with pytest.raises(shmbus.NotFound):
        shmbus.Bus.remove(name)


def test_fileno_then_blocking_recv(name):
    bus = shmbus.Bus.create(name)
    pub = bus.publisher()
    sub = bus.subscriber()
    fd = sub.fileno()
    assert fd >= 0 and sub.fileno() == fd
    assert sub.try_recv() is None
    pub.publish(b"after arming")
    import select
    assert select.select([fd], [], [], 10)[0] == [fd]
    assert sub.recv(timeout=5) == (0, b"after arming")
    assert sub.recv(timeout=0.01) is None
    pub.publish(b"again")
    assert sub.recv(timeout=5) == (1, b"again")


def test_reprs_and_publisher_capacity(name):
    bus = shmbus.Bus.create(name, slots=8, capacity=64)
    pub = bus.publisher()
    assert pub.capacity == bus.capacity
    sub = bus.subscriber()
    assert repr(sub) == f'<shmbus.Subscriber of bus "{name}", next 0>'
    assert repr(bus) == f'<shmbus.Bus "{name}": 8 slots of 64 bytes, bytes>'
    q = shmbus.Queue.create(name + "-q", capacity=4, item_size=8)
    r = shmbus.Records.create(name + "-r", bytes=4096)
    b = shmbus.Board.create(name + "-b", cells=2, value_size=8)
    try:
        assert repr(q) == f'<shmbus.Queue "{name}-q": 0 of 4 items of 8 bytes>'
        assert repr(r) == f'<shmbus.Records "{name}-r": 4096-byte ring>'
        assert repr(b) == f'<shmbus.Board "{name}-b": 2 cells of 8 bytes>'
    finally:
        for k in ("-q", "-r", "-b"):
            shmbus.remove(name + k)


def test_shared_write_mode_is_refused_unless_accepted(name):
    shmbus.Bus.create(name, permissions=0o666)
    with pytest.raises(shmbus.Refused, match="has mode 0666, writable by other users"):
        shmbus.Bus.open(name)
    assert shmbus.Bus.open(name, accept_shared_write=True).name == name
    assert shmbus.info(name)["access"]["shared_write"] is True
    assert {c["check"]: c["status"] for c in shmbus.info(name)["checks"]}["mode"] == "WARN"
