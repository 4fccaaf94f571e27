import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import shmbus

_counter = itertools.count()


@pytest.fixture
def name(request):
    """A segment name of this test's own; the segment is removed afterwards if it exists."""
    n = f"pytest-{os.getpid()}-{next(_counter)}"
    yield n
    try:
        shmbus.remove(n)
    except shmbus.NotFound:
        pass


def _find(env, binary):
    if os.environ.get(env):
        return os.environ[env]
    root = Path(__file__).resolve().parents[3]
    for p in (root / "target" / "debug" / binary, root / "target" / "release" / binary):
        if p.exists():
            return str(p)
    return shutil.which(binary)


def _runner(env, binary, how):
    path = _find(env, binary)
    if path is None:
        if os.environ.get("SHMBUS_REQUIRE_RUST_PEERS"):
            pytest.fail(f"{env} is not set and no {binary} binary was found")
        pytest.skip(f"{binary} is not built ({how})")

    def run(*args, input=None):
        r = subprocess.run(
            [path, *args], input=input, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, f"{binary} {' '.join(args)} failed: {r.stderr}"
        return r.stdout

    run.path = path
    return run


@pytest.fixture(scope="session")
def cli():
    """Runs the Rust inspector (`shmbus`, tools/shmbus): returns its stdout as text. Set
    SHMBUS_CLI to its path; .ci/bindings-python.sh builds it and requires these tests."""
    return _runner("SHMBUS_CLI", "shmbus", "cargo build -p shmbus-cli")


@pytest.fixture(scope="session")
def rust_peer():
    """Runs tests/rust-peer, the Rust side of the typed-bus tests (SHMBUS_RUST_PEER)."""
    return _runner("SHMBUS_RUST_PEER", "rust-peer",
                   "cargo build --manifest-path bindings/python/tests/rust-peer/Cargo.toml")


@pytest.fixture(scope="session", autouse=True)
def no_segment_left_behind():
    """Every test removes what it made in /dev/shm: checked once the session ends."""
    yield
    left = [f for f in os.listdir("/dev/shm") if f.startswith(f"shmbus.pytest-{os.getpid()}-")]
    assert not left, f"segments left in /dev/shm: {left}"
