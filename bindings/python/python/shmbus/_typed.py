"""Typed buses: messages as ``ctypes.Structure`` instances or numpy structured scalars, laid out
like the Rust ``Pod`` type of the bus and checked against the fingerprint the bus records (type
name, size, alignment) when opened."""

import ctypes

from ._errors import Closed, TypeMismatch
from ._shmbus import Bus


class _Layout:
    """How one Python type maps onto a bus's messages: its size, alignment and name, and how
    to turn a message's bytes into a value and a value into bytes."""

    def __init__(self, ty, type_name):
        if isinstance(ty, type) and issubclass(ty, (ctypes.Structure, ctypes.Union)):
            self.size = ctypes.sizeof(ty)
            self.align = ctypes.alignment(ty)
            self.name = type_name or ty.__name__
            self.decode = ty.from_buffer_copy
            self.check = lambda v: isinstance(v, ty)
        elif hasattr(ty, "itemsize") and hasattr(ty, "alignment") and hasattr(ty, "fields"):
            # A numpy dtype (numpy is not a dependency: only used when given one).
            if not type_name:
                raise ValueError("a numpy dtype has no type name: give type_name= (as the Rust side records it)")
            import numpy

            self.size = ty.itemsize
            self.align = ty.alignment
            self.name = type_name
            self.decode = lambda b: numpy.frombuffer(b, dtype=ty)[0]
            self.check = lambda v: getattr(v, "dtype", None) == ty
        else:
            raise TypeError(
                f"a typed bus takes a ctypes.Structure subclass or a numpy structured dtype, not {ty!r}"
            )
        self.type = ty

    def describe(self):
        return f"{self.name} (size {self.size}, align {self.align})"

    def matches(self, recorded):
        """Whether the fingerprint a bus records is this type's. A Rust type recorded under
        its default name (``std::any::type_name``, ``my_crate::Tick``) matches by its last path
        segment."""
        name = recorded["name"]
        return (
            recorded["size"] == self.size
            and recorded["align"] == self.align
            and (name == self.name or name.rsplit("::", 1)[-1] == self.name)
        )


def _describe(recorded):
    if recorded["size"] == 0:
        return "bytes"
    return f"{recorded['name']} (size {recorded['size']}, align {recorded['align']})"


class TypedBus:
    """A bus of typed messages. ``TypedBus.open(name, Tick)`` opens bus ``name`` and checks
    that it carries ``Tick``: a ``ctypes.Structure`` subclass (named like the Rust type, or give
    ``type_name=``) or a numpy structured dtype (``type_name=`` required; build it with
    ``align=True`` to get C layout). Raises TypeMismatch otherwise. Publishers take values of the
    type; subscribers return ``(seq, value)``.

    Creating a typed bus from Python is not supported yet: the Rust process that owns the type
    creates it (``BusBuilder::new(name).message_type::<Tick>()``)."""

    def __init__(self, bus, ty, type_name=None):
        layout = _Layout(ty, type_name)
        recorded = bus.message_type
        if not layout.matches(recorded):
            raise TypeMismatch(
                f"segment {bus.name!r} carries items of type {_describe(recorded)}, "
                f"not {layout.describe()}"
            )
        self.bus = bus
        self.layout = layout

    @classmethod
    def open(cls, name, ty, *, type_name=None, **options):
        """Opens bus ``name`` (``read_only=``, ``accept_other_owner=``,
        ``accept_shared_write=`` as ``Bus.open``) and checks its type."""
        return cls(Bus.open(name, **options), ty, type_name)

    @property
    def name(self):
        return self.bus.name

    def publisher(self):
        return TypedPublisher(self.bus.publisher(), self.layout)

    def subscriber(self, *args, **kwargs):
        """As ``Bus.subscriber``."""
        return TypedSubscriber(self.bus.subscriber(*args, **kwargs), self.layout)


class TypedPublisher:
    """Publishes values of a typed bus's type."""

    def __init__(self, pub, layout):
        self._pub = pub
        self._layout = layout

    def publish(self, value):
        """Publishes one value; returns its sequence number (None if a multi-producer bus
        dropped it)."""
        if not self._layout.check(value):
            raise TypeError(f"this bus carries {self._layout.describe()}, not {type(value).__name__}")
        return self._pub.publish(value)

    def close(self):
        self._pub.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TypedSubscriber:
    """Receives values of a typed bus's type, as ``(seq, value)``: each a copy (a message is
    copied out of the ring and validated before it is returned). Laps and closing raise as
    for a bytes subscriber."""

    def __init__(self, sub, layout):
        self._sub = sub
        self._decode = layout.decode

    def _typed(self, got):
        return None if got is None else (got[0], self._decode(got[1]))

    def try_recv(self):
        return self._typed(self._sub.try_recv())

    def recv(self, timeout=None):
        return self._typed(self._sub.recv(timeout))

    async def recv_async(self):
        return self._typed(await self._sub.recv_async())

    def fileno(self):
        return self._sub.fileno()

    @property
    def next_seq(self):
        return self._sub.next_seq

    @property
    def lost(self):
        return self._sub.lost

    @property
    def received(self):
        return self._sub.received

    def __iter__(self):
        return self

    def __next__(self):
        try:
            got = self._sub.recv()
        except Closed:
            raise StopIteration from None
        return self._typed(got)
