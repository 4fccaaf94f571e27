"""Typed buses between Python and Rust: the Rust side (tests/rust-peer) carries

    #[repr(C)] struct Tick { price: f64, qty: u32, side: u8, _pad: [u8; 3] }

recorded under the type name "Tick" (16 bytes, alignment 8)."""

import asyncio
import ctypes

import pytest

import shmbus


class Tick(ctypes.Structure):
    _fields_ = [("price", ctypes.c_double), ("qty", ctypes.c_uint32),
                ("side", ctypes.c_uint8), ("_pad", ctypes.c_uint8 * 3)]


def test_rust_typed_publisher_python_ctypes_subscriber(name, rust_peer):
    rust_peer("publish", name, "5")
    bus = shmbus.TypedBus.open(name, Tick)
    assert bus.bus.message_type == {"name": "Tick", "size": 16, "align": 8}
    sub = bus.subscriber("oldest")
    got = [(seq, t.price, t.qty, t.side) for seq, t in sub]
    assert got == [(i, i + 0.5, 10 * i, i % 2) for i in range(5)]
    assert isinstance(bus.subscriber(sequence=4).try_recv()[1], Tick)


def test_python_ctypes_publisher_rust_typed_subscriber(name, rust_peer):
    rust_peer("publish", name, "0")  # Rust creates the bus for its type
    bus = shmbus.TypedBus.open(name, Tick)
    with bus.publisher() as pub:
        for i in range(3):
            assert pub.publish(Tick(price=i * 2.25, qty=i + 7, side=1)) == i
        with pytest.raises(TypeError, match=r"carries Tick \(size 16, align 8\), not bytes"):
            pub.publish(b"\x00" * 16)
    out = rust_peer("read", name, "3").splitlines()
    assert out == [f"{i} {i * 2.25:g} {i + 7} 1" for i in range(3)]


def test_fingerprint_is_checked(name, rust_peer):
    rust_peer("publish", name, "0")

    class Other(ctypes.Structure):
        _fields_ = [("price", ctypes.c_double), ("qty", ctypes.c_uint64)]

    with pytest.raises(shmbus.TypeMismatch, match=r"Tick \(size 16, align 8\), not Other \(size 16, align 8\)"):
        shmbus.TypedBus.open(name, Other)
    # The right name with another layout.
    short_tick = type("Tick", (ctypes.Structure,), {"_fields_": [("price", ctypes.c_double)]})
    with pytest.raises(shmbus.TypeMismatch, match=r"not Tick \(size 8, align 8\)"):
        shmbus.TypedBus.open(name, short_tick)
    # The right layout under another Python name, given the recorded name.
    assert shmbus.TypedBus.open(name, Other, type_name="Tick").name == name
    with pytest.raises(TypeError, match="ctypes.Structure subclass or a numpy structured dtype"):
        shmbus.TypedBus.open(name, int)
    raw = shmbus.Bus.create(name + "-raw")
    try:
        with pytest.raises(shmbus.TypeMismatch, match="carries items of type bytes"):
            shmbus.TypedBus(raw, Tick)
    finally:
        shmbus.remove(name + "-raw")


def test_typed_recv_async(name, rust_peer):
    rust_peer("publish", name, "2")
    sub = shmbus.TypedBus.open(name, Tick).subscriber("oldest")

    async def main():
        return [await sub.recv_async() for _ in range(2)]

    got = asyncio.run(main())
    assert [(seq, t.price) for seq, t in got] == [(0, 0.5), (1, 1.5)]


def test_numpy_dtype(name, rust_peer):
    np = pytest.importorskip("numpy")
    tick = np.dtype([("price", "<f8"), ("qty", "<u4"), ("side", "u1"), ("_pad", "u1", (3,))],
                    align=True)
    rust_peer("publish", name, "3")
    with pytest.raises(ValueError, match="give type_name"):
        shmbus.TypedBus.open(name, tick)
    bus = shmbus.TypedBus.open(name, tick, type_name="Tick")
    got = [(seq, float(v["price"]), int(v["qty"])) for seq, v in bus.subscriber("oldest")]
    assert got == [(i, i + 0.5, 10 * i) for i in range(3)]
    value = np.zeros((), dtype=tick)
    value["price"], value["qty"] = 9.5, 99
    with bus.publisher() as pub:
        assert pub.publish(value[()]) == 3
    assert rust_peer("read", name, "4").splitlines()[-1] == "3 9.5 99 0"
