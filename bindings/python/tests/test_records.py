import pytest

import shmbus


def test_publish_receive_variable_sizes(name):
    r = shmbus.Records.create(name, bytes=4096)
    assert (r.name, r.ring_bytes) == (name, 4096)
    assert r.max_record < 1024
    pub = r.publisher()
    sub = r.subscriber()
    sizes = [0, 1, 100, r.max_record]
    for i, n in enumerate(sizes):
        assert pub.publish(bytes([i]) * n, type_id=i) == i
    assert r.published == 4 and r.has_producers
    got = [sub.try_recv() for _ in sizes]
    assert got == [(i, i, bytes([i]) * n) for i, n in enumerate(sizes)]
    assert sub.try_recv() is None and sub.recv(timeout=0.01) is None
    assert (sub.next_seq, sub.received, sub.lost) == (4, 4, 0)
    with pytest.raises(shmbus.TooLarge, match="at most"):
        pub.publish(b"x" * (r.max_record + 1))


def test_lap_closed_iteration(name):
    r = shmbus.Records.create(name, bytes=4096)
    sub = r.subscriber(sequence=0)
    with r.publisher() as pub:
        for i in range(20):
            pub.publish(bytes([i]) * 500)
    with pytest.raises(shmbus.Lapped) as e:
        sub.recv(timeout=1)
    assert e.value.lost > 0
    rest = list(sub)
    assert [seq for seq, _, _ in rest] == list(range(e.value.lost, 20))
    assert sub.lost == e.value.lost
    with pytest.raises(shmbus.Closed):
        sub.try_recv()


def test_errors(name):
    r = shmbus.Records.create(name)
    first = r.publisher()  # kept alive: it holds the one producer place
    with pytest.raises(shmbus.ProducerExists):
        r.publisher()
    first.close()
    r.publisher().close()
    with pytest.raises(shmbus.ReadOnly):
        shmbus.Records.open(name, read_only=True).publisher()
    with pytest.raises(shmbus.InvalidConfig):
        shmbus.Records.create(name + "-x", bytes=5000)
    with pytest.raises(shmbus.WrongKind):
        shmbus.Bus.open(name)
    shmbus.Records.remove(name)
    with pytest.raises(shmbus.NotFound):
        shmbus.Records.open(name)


def test_fileno_then_blocking_recv(name):
    import select

    r = shmbus.Records.create(name)
    pub = r.publisher()
    sub = r.subscriber()
    fd = sub.fileno()
    assert sub.try_recv() is None
    pub.publish(b"x")
    assert select.select([fd], [], [], 10)[0] == [fd]
    assert sub.recv(timeout=5) == (0, 0, b"x")
    assert sub.recv(timeout=0.01) is None
    pub.close()
    with pytest.raises(shmbus.Closed):
        sub.recv(timeout=5)
