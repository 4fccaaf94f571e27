"""The memoryview of ``LaneConsumer.recv_view``: a record's bytes in place, read-only.

The view is made over a ctypes array at the record's address. Every memoryview derived from it
(slices, casts, ``memoryview(view)``) shares one managed buffer, which holds one reference to
that array until the last of them is released or collected; so once our own views are
released, the array's reference count tells whether any view of the record is left. The
extension acknowledges the record only when none is (see README, "Lanes")."""

import ctypes


def export(address, length):
    """The array over ``length`` bytes at ``address``, the views made of it (to release, in
    this order), and the read-only view handed out (the first of them)."""
    array = (ctypes.c_ubyte * length).from_address(address)
    whole = memoryview(array)
    as_bytes = whole.cast("B")
    view = as_bytes.toreadonly()
    return array, [view, as_bytes, whole]


def release(views):
    """Releases our views; BufferError if the one handed out has exports (a numpy array over
    it, a PickleBuffer...), and then none is released."""
    for v in views:
        v.release()
