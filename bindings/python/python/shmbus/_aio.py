"""asyncio for subscribers and queue receivers: ``await sub.recv_async()`` waits on the handle's
descriptor with ``loop.add_reader``. Cancel-safe: a message is taken only by the non-blocking
receive that returns it, so a cancelled await loses nothing."""

import asyncio


async def recv_async(sub):
    loop = asyncio.get_running_loop()
    # The descriptor first: from then on a receive that finds nothing arms it.
    fd = sub.fileno()
    # A queue receiver's step also tells a closed queue (its try_recv does not).
    poll = getattr(sub, "_poll_async", sub.try_recv)
    while True:
        got = poll()
        if got is not None:
            return got
        ready = loop.create_future()

        def wake(fut=ready):
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


class AsyncIter:
    """``async for seq, data in shmbus.aiter(sub)`` (or ``item in shmbus.aiter(rx)``): ends
    when the segment is closed; raises Lapped like recv()."""

    def __init__(self, sub):
        self._sub = sub

    def __aiter__(self):
        return self

    async def __anext__(self):
        from ._errors import Closed

        try:
            return await self._sub.recv_async()
        except Closed:
            raise StopAsyncIteration from None
