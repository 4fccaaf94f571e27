"""The exceptions of shmbus. Every one derives from ShmbusError; where a built-in exception says
the same thing (a missing file, a bad value), it derives from that too, so that
``except FileNotFoundError`` works as a Python user expects. Their text is the Rust library's."""


class ShmbusError(Exception):
    """Any error of shmbus."""


class NotFound(ShmbusError, FileNotFoundError):
    """No segment of that name exists."""


class AlreadyExists(ShmbusError, FileExistsError):
    """A segment (or another object) of that name exists already."""


class PermissionDenied(ShmbusError, PermissionError):
    """The operating system refused access to the segment."""


class InvalidName(ShmbusError, ValueError):
    """The segment name breaks the naming rule (1 to 200 of [A-Za-z0-9._-], not starting with '.')."""


class InvalidConfig(ShmbusError, ValueError):
    """A creation setting is out of range, or an existing segment has another geometry."""


class WrongKind(ShmbusError):
    """The segment holds another kind of shmbus object (a queue opened as a bus, ...)."""


class TypeMismatch(ShmbusError):
    """The segment carries another message type than the one asked for."""


class TooLarge(ShmbusError, ValueError):
    """A message, record, item or value does not fit (or is not one value of a typed segment)."""


class ProducerExists(ShmbusError):
    """Every producer place is taken: a single-producer segment already has a live producer, or
    a multi-producer bus or a queue is at its limit."""


class LanesFull(ProducerExists):
    """Every lane of a lanes segment is held by a live producer or still being drained by the
    consumer after its producer closed it."""


class ConsumerExists(ShmbusError):
    """A lanes segment already has a live consumer (one at a time)."""


class Busy(ShmbusError):
    """A board cell was being updated by another writer during every attempt; try again."""


class ReadOnly(ShmbusError):
    """The handle was opened read-only and cannot write."""


class OutOfRange(ShmbusError, IndexError):
    """A board has no cell of that index."""


class NoSpace(ShmbusError, OSError):
    """/dev/shm has no room for the segment."""


class UsedAfterFork(ShmbusError):
    """A handle attached before fork() was used in the child: attach again in the child."""


class Refused(ShmbusError):
    """The segment failed a check of the opening pipeline: not a regular file, another owner or
    a shared-write mode not accepted, truncated, not a shmbus segment, unfinished, or made by an
    incompatible version of shmbus."""


class Corrupt(Refused):
    """The segment's header or control words are inconsistent (damaged, or forged)."""


class Full(ShmbusError):
    """A queue stayed full until the send's deadline."""


class Closed(ShmbusError):
    """No producer (or queue sender) is attached and everything has been received. Not final:
    a producer may attach later and the sequence goes on."""


class Lapped(ShmbusError):
    """The subscriber fell behind and exactly ``lost`` messages were overwritten before it read
    them (or abandoned by a writer that died). The subscriber stays usable: the next receive
    returns the oldest message still intact (or the newest, with lap_policy="newest")."""

    def __init__(self, lost):
        super().__init__(f"subscriber was lapped: {lost} messages lost")
        self.lost = lost


class LanesCorrupt(Corrupt):
    """A lanes segment's lane words contradict each other or the lanes' shape (a damaged or
    forged segment). Nothing out of bounds was read; a receive that raises it skips that lane
    until its next turn, and the other lanes go on."""
