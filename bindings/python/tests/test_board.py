import pytest

import shmbus


def test_set_get_by_index_and_key(name):
    b = shmbus.Board.create(name, cells=4, value_size=16, keys=["hip", "knee"])
    assert (b.name, len(b), b.value_size) == (name, 4, 16)
    assert b.keys() == ["hip", "knee", None, None]
    assert b.value_type["size"] == 0
    assert b.get(0) is None and b["knee"] is None and b.get_versioned(3) is None
    assert b.set("knee", b"angle=1") == 1
    assert b.set(1, b"angle=2") == 2
    b[3] = bytearray(b"three")
    assert b.get("knee") == b"angle=2" and b[1] == b"angle=2"
    assert b.get_versioned("knee") == (2, b"angle=2")
    assert b[3] == b"three"
    other = shmbus.Board.open(name, read_only=True)
    assert other["knee"] == b"angle=2"
    assert other.holds() == [], "committed updates hold no cell"


def test_errors(name):
    b = shmbus.Board.create(name, cells=2, value_size=4)
    with pytest.raises(shmbus.OutOfRange, match=f'board "{name}" has 2 cells; there is no cell 2'):
        b.get(2)
    with pytest.raises(IndexError):
        b.set(-1, b"x")
    with pytest.raises(KeyError, match="no key"):
        b.get("nope")
    with pytest.raises(TypeError, match="int index or a str key"):
        b.get(1.5)
    with pytest.raises(shmbus.TooLarge, match=f'value is 5 bytes, a cell of board "{name}" holds 4'):
        b.set(0, b"12345")
    with pytest.raises(shmbus.ReadOnly):
        shmbus.Board.open(name, read_only=True).set(0, b"x")
    with pytest.raises(shmbus.InvalidConfig):
        shmbus.Board.create(name + "-x", cells=0)
    shmbus.Board.remove(name)
    with pytest.raises(shmbus.NotFound):
        shmbus.Board.open(name)
