import json

import pytest

import shmbus

# Sampled over --sample-ms by the inspector, or a time since a stamp: not compared.
SAMPLED = {"last_publish", "producer_stamp_ns_ago"}


def _strip(d):
    return {k: v for k, v in d.items() if k not in SAMPLED} if isinstance(d, dict) else d


def test_list_matches_the_inspector(name, cli):
    bus = shmbus.Bus.create(name + "-bus", slots=8, capacity=64)
    pub = bus.publisher()
    pub.publish(b"one")
    q = shmbus.Queue.create(name + "-queue", capacity=4)
    q.sender().send(b"item")
    shmbus.Board.create(name + "-board", cells=2, keys=["a"])
    shmbus.Records.create(name + "-records")
    lanes = shmbus.Lanes.create(name + "-lanes", lanes=2, lane_bytes=4096)
    lane = lanes.acquire()
    lane.publish(b"12345")
    try:
        ours = {e["name"]: e for e in shmbus.list() if e["name"] and e["name"].startswith(name)}
        theirs = json.loads(cli("list", "--json", "--prefix", name, "--sample-ms", "10"))
        theirs = {e["name"]: e for e in theirs}
        assert set(ours) == {name + k for k in ("-bus", "-queue", "-board", "-records", "-lanes")}
        assert set(ours) == set(theirs)
        for n in ours:
            mine, cli_entry = ours[n], theirs[n]
            assert list(mine) == list(cli_entry)
            for key in mine:
                assert _strip(mine[key]) == _strip(cli_entry[key]), (n, key)
        assert ours[name + "-bus"]["bus"]["published"] == 1
        assert ours[name + "-queue"]["queue"]["len"] == 1
        assert ours[name + "-bus"]["queue"] is None
        assert ours[name + "-lanes"]["lanes"]["lanes_in_use"] == 1
        assert ours[name + "-lanes"]["lanes"]["pending_bytes"] == 16
    finally:
        lane.close()
        for k in ("-bus", "-queue", "-board", "-records", "-lanes"):
            shmbus.remove(name + k)


def test_list_reports_unreadable_segments(name):
    with open(f"/dev/shm/shmbus.{name}", "wb") as f:
        f.write(b"\x00" * 10)
    [entry] = [e for e in shmbus.list() if e["name"] == name]
    assert entry["kind"] == "error"
    assert name in entry["error"]
    assert all(entry[k] is None for k in ("bus", "queue", "board", "records", "lanes"))


def test_info_matches_the_inspector(name, cli):
    bus = shmbus.Bus.create(name, slots=8, capacity=64)
    pub = bus.publisher()
    pub.publish(b"one")
    ours = shmbus.info(name)
    theirs = json.loads(cli("info", name, "--json", "--sample-ms", "10"))
    for key in ("name", "kind", "path", "checks", "header"):
        assert ours[key] == theirs[key], key
    assert _strip(ours["summary"]) == _strip(theirs["summary"])
    assert [(p["index"], p["pid"]) for p in ours["producers"]] == [
        (p["index"], p["pid"]) for p in theirs["producers"]]
    assert ours["access"]["mode"] == "0600"
    assert all(c["status"] == "ok" for c in ours["checks"])

    shmbus.Bus.create(name + "-m", multi_producer=True, stall_bound=0.25)
    try:
        ours = shmbus.info(name + "-m")
        theirs = json.loads(cli("info", name + "-m", "--json", "--sample-ms", "10"))
        assert ours["header"] == theirs["header"]
        assert ours["header"]["stall_bound_ms"] == 250.0
    finally:
        shmbus.remove(name + "-m")

    q = shmbus.Queue.create(name + "-q", stall_bound=0.5)
    tx = q.sender()
    try:
        ours = shmbus.info(name + "-q")
        theirs = json.loads(cli("info", name + "-q", "--json"))
        assert ours["kind"] == "queue"
        assert ours["summary"] == theirs["summary"]
        assert ours["summary"]["stall_bound_ms"] == 500.0
        assert ours["summary"]["passed"] == 0
        assert ours["access"] == theirs["access"]
        assert ours["participants"] == theirs["participants"]
        tx.close()
    finally:
        shmbus.remove(name + "-q")

    shmbus.Lanes.create(name + "-l", lanes=2, lane_bytes=4096)
    try:
        ours = shmbus.info(name + "-l")
        theirs = json.loads(cli("list", "--json", "--prefix", name + "-l"))
        assert ours["kind"] == "lanes"
        assert ours["summary"] == theirs[0]["lanes"]
    finally:
        shmbus.remove(name + "-l")


def test_info_errors(name):
    with pytest.raises(shmbus.NotFound):
        shmbus.info(name)
    with pytest.raises(shmbus.InvalidName):
        shmbus.info("../etc")


def test_a_stalled_sender_is_held_as_the_inspector_says(name, cli):
    import mmap
    import os
    import struct

    q = shmbus.Queue.create(name, capacity=4, item_size=16, stall_bound=None)
    tx = q.sender()
    [entry] = shmbus.info(name)["participants"]
    assert entry["pid"] == os.getpid() and entry["role"] == "sender" and entry["alive"]
    # The words a sender stores when it takes position 0 (its claim word, then the tail;
    # docs/design.md §11) and then nothing: a live sender stopped before publishing.
    with open(f"/dev/shm/shmbus.{name}", "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        struct.pack_into("=Q", m, 8 * (256 + 8 * entry["index"] + 3), 1)
        struct.pack_into("=Q", m, 8 * 128, 1)
    want = {"index": entry["index"], "pid": os.getpid(), "role": "sender", "position": 0,
            "state": "unpublished"}
    assert q.holds() == [want]
    theirs = json.loads(cli("info", name, "--json", "--sample-ms", "10"))
    assert [{k: v for k, v in s.items() if k != "held_ms_at_least"}
            for s in theirs["stalled"]] == [want]
    assert shmbus.info(name)["participants"] == theirs["participants"]
    tx.close()
