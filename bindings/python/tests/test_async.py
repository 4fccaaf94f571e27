import asyncio

import pytest

import shmbus


def test_recv_async_wakes_on_publish(name):
    bus = shmbus.Bus.create(name)
    pub = bus.publisher()
    sub = bus.subscriber()

    async def main():
        task = asyncio.create_task(sub.recv_async())
        await asyncio.sleep(0)  # let it arm and wait (no message yet)
        assert not task.done()
        pub.publish(b"hello")
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(main()) == (0, b"hello")


def test_recv_async_is_cancel_safe(name):
    bus = shmbus.Bus.create(name)
    pub = bus.publisher()
    sub = bus.subscriber()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sub.recv_async(), 0.05)
        # Nothing was taken by the cancelled receive: the next message is seq 0.
        pub.publish(b"after cancel")
        first = await asyncio.wait_for(sub.recv_async(), 30)
        # Cancelled while a message is waiting: still not lost.
        pub.publish(b"kept")
        task = asyncio.create_task(sub.recv_async())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        second = await asyncio.wait_for(sub.recv_async(), 30)
        return first, second

    assert asyncio.run(main()) == ((0, b"after cancel"), (1, b"kept"))


def test_async_iteration_laps_and_close(name):
    bus = shmbus.Bus.create(name, slots=4)
    sub = bus.subscriber(sequence=0)

    async def main():
        got = []
        with bus.publisher() as pub:
            for i in range(6):
                pub.publish(bytes([i]))
        with pytest.raises(shmbus.Lapped) as e:
            await sub.recv_async()
        assert e.value.lost == 2
        async for seq, data in shmbus.aiter(sub):
            got.append((seq, data))
        return got

    assert asyncio.run(main()) == [(i, bytes([i])) for i in range(2, 6)]


def test_many_subscribers_in_one_loop(name):
    bus = shmbus.Bus.create(name, slots=64)
    pub = bus.publisher()
    subs = [bus.subscriber() for _ in range(4)]

    async def reader(sub):
        return [await sub.recv_async() for _ in range(10)]

    async def main():
        tasks = [asyncio.create_task(reader(s)) for s in subs]
        await asyncio.sleep(0)
        for i in range(10):
            pub.publish(bytes([i]))
            await asyncio.sleep(0)
        return await asyncio.wait_for(asyncio.gather(*tasks), 30)

    expected = [(i, bytes([i])) for i in range(10)]
    assert asyncio.run(main()) == [expected] * 4


def test_records_recv_async(name):
    r = shmbus.Records.create(name)
    sub = r.subscriber()

    async def main():
        task = asyncio.create_task(sub.recv_async())
        await asyncio.sleep(0)
        assert not task.done()
        with r.publisher() as pub:
            pub.publish(b"record", type_id=7)
            pub.publish(b"more")
        first = await asyncio.wait_for(task, 30)
        rest = [x async for x in shmbus.aiter(sub)]
        return first, rest

    assert asyncio.run(main()) == ((0, 7, b"record"), [(1, 0, b"more")])


def test_queue_recv_async_cancel_safe_and_closed(name):
    q = shmbus.Queue.create(name, capacity=8, item_size=16)
    rx = q.receiver()
    tx = q.sender()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rx.recv_async(), 0.05)
        task = asyncio.create_task(rx.recv_async())
        await asyncio.sleep(0)
        tx.send(b"one")
        first = await asyncio.wait_for(task, 30)
        tx.send(b"two")
        tx.send(b"three")
        tx.close()
        rest = [x async for x in shmbus.aiter(rx)]
        with pytest.raises(shmbus.Closed):
            await asyncio.wait_for(rx.recv_async(), 30)
        return first, rest

    assert asyncio.run(main()) == (b"one", [b"two", b"three"])
