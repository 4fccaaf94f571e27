"""shmbus: shared-memory messaging for Linux, from Python.

Attach to the same named segments in /dev/shm as Rust (and C) processes: a broadcast ``Bus``
(seqlock ring, exact lap counts), a work ``Queue`` (each item to exactly one receiver),
``Records`` (variable-size broadcast), a ``Board`` (the latest value of each cell) and
``Lanes`` (a lane per producer, one consumer).
Blocking calls release the GIL and answer Ctrl-C; ``await sub.recv_async()`` works in asyncio.
"""

from ._errors import (
    AlreadyExists,
    Busy,
    Closed,
    ConsumerExists,
    Corrupt,
    Full,
    InvalidConfig,
    InvalidName,
    LanesCorrupt,
    LanesFull,
    Lapped,
    NoSpace,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ProducerExists,
    ReadOnly,
    Refused,
    ShmbusError,
    TooLarge,
    TypeMismatch,
    UsedAfterFork,
    WrongKind,
)
from ._shmbus import (
    Board,
    Bus,
    LaneClosed,
    LaneConsumer,
    LanePublisher,
    Lanes,
    LaneView,
    Publisher,
    Queue,
    Receiver,
    RecordPublisher,
    Records,
    RecordSubscriber,
    Sender,
    Subscriber,
    info,
    list,
    remove,
)
from ._aio import AsyncIter as aiter
from ._typed import TypedBus, TypedPublisher, TypedSubscriber

__all__ = [
    "AlreadyExists", "Board", "Bus", "Busy", "Closed", "ConsumerExists", "Corrupt", "Full", "InvalidConfig",
    "InvalidName", "LaneClosed", "LaneConsumer", "LanePublisher", "Lanes", "LanesCorrupt", "LaneView",
    "LanesFull", "Lapped", "NoSpace", "NotFound", "OutOfRange", "PermissionDenied",
    "ProducerExists", "Publisher", "Queue", "ReadOnly", "Receiver", "RecordPublisher", "Records",
    "RecordSubscriber", "Refused", "Sender", "ShmbusError", "Subscriber", "TooLarge",
    "TypeMismatch", "TypedBus", "TypedPublisher", "TypedSubscriber", "UsedAfterFork", "WrongKind", "aiter", "info", "list", "remove",
]
