"""Blocking calls release the GIL, and Ctrl-C interrupts them."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmbus


def test_blocking_recv_in_one_thread_while_another_publishes(name):
    bus = shmbus.Bus.create(name, slots=1024)
    pub = bus.publisher()
    sub = bus.subscriber()
    got = []

    def consume():
        for _ in range(200):
            got.append(sub.recv(timeout=30))

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        pub.publish(i.to_bytes(4, "little"))
    t.join(timeout=60)
    assert not t.is_alive()
    assert got == [(i, i.to_bytes(4, "little")) for i in range(200)]


def test_queue_workers_in_threads(name):
    q = shmbus.Queue.create(name, capacity=16, item_size=8)
    results = [[] for _ in range(3)]

    def work(out):
        rx = q.receiver()
        for item in rx:
            out.append(item)

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    with q.sender() as tx:
        for i in range(300):
            tx.send(i.to_bytes(8, "little"), timeout=30)
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    items = sorted(int.from_bytes(x, "little") for r in results for x in r)
    assert items == list(range(300))


# Run in a child process, so that a GIL held across the wait would show as a timeout of the
# child rather than hang the test run: the main thread publishes only while the other thread
# is blocked in recv() with no timeout, which it can only do if that recv released the GIL.
GIL_SCRIPT = r"""
import sys, threading, time, shmbus
bus = shmbus.Bus.open(sys.argv[1])
pub = bus.publisher()
sub = bus.subscriber()
got = []
entering = threading.Event()

def consume():
    entering.set()
    got.append(sub.recv())   # no timeout: waits until the main thread publishes

t = threading.Thread(target=consume, daemon=True)
t.start()
entering.wait()

def state(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]

# The receiving thread asleep in the kernel, and this thread running Python meanwhile.
while state(t.native_id) != "S":
    time.sleep(0.001)
pub.publish(b"wake")
t.join()
print(got[0])
"""


def test_blocking_recv_releases_the_gil(name):
    shmbus.Bus.create(name)
    r = subprocess.run([sys.executable, "-c", GIL_SCRIPT, name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(0, b'wake')"


# Each blocks forever unless interrupted: a receive on a bus with a live publisher and nothing
# published, a send to a full queue with a live receiver that takes nothing, a lanes consumer's
# receive with a live producer that publishes nothing.
SIGINT_SCRIPTS = {
    "bus recv": r"""
import sys, shmbus
bus = shmbus.Bus.open(sys.argv[1])
keep = bus.publisher()
sub = bus.subscriber()
print("ready", flush=True)
try:
    sub.recv()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
""",
    "queue send": r"""
import sys, shmbus
q = shmbus.Queue.create(sys.argv[1] + "-q", capacity=1, item_size=8)
try:
    keep = q.receiver()
    tx = q.sender()
    tx.send(b"fills it")
    print("ready", flush=True)
    try:
        tx.send(b"waits")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
finally:
    shmbus.remove(sys.argv[1] + "-q")
""",
    "lanes recv": r"""
import sys, shmbus
lanes = shmbus.Lanes.create(sys.argv[1] + "-l", lanes=1, lane_bytes=4096)
try:
    c = lanes.consumer()
    keep = lanes.acquire()
    print("ready", flush=True)
    try:
        c.recv()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
finally:
    shmbus.remove(sys.argv[1] + "-l")
""",
}


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("call", sorted(SIGINT_SCRIPTS))
def test_ctrl_c_interrupts_a_blocking_call(name, call):
    shmbus.Bus.create(name)
    child = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPTS[call], name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        # Until it sleeps: blocked in the receive, not still on its way there.
        deadline = time.monotonic() + 30
        while _state(child.pid) != "S" and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 3, err
    assert out.strip() == "interrupted"


def test_one_handle_in_two_threads_at_once_is_refused(name):
    bus = shmbus.Bus.create(name)
    keep = bus.publisher()  # attached, so recv() waits rather than reporting a closed bus
    sub = bus.subscriber()
    entering = threading.Event()

    def consume():
        entering.set()
        sub.recv(timeout=30)

    t = threading.Thread(target=consume)
    t.start()
    entering.wait()
    deadline = time.monotonic() + 30
    while _state_of_thread(t.native_id) != "S" and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        with pytest.raises(RuntimeError, match="borrowed"):
            sub.try_recv()
    finally:
        keep.publish(b"release the waiting thread")
        t.join(timeout=30)
    assert not t.is_alive()


def _state_of_thread(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
