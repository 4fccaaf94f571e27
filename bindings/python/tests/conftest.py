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


def _find_cli():
    env = os.environ.get("SHMBUS_CLI")
    if env:
        return env
    root = Path(__file__).resolve().parents[3]
    for p in (root / "target" / "debug" / "shmbus", root / "target" / "release" / "shmbus"):
        if p.exists():
            return str(p)
    return shutil.which("shmbus")


@pytest.fixture(scope="session")
def cli():
    """Runs the Rust inspector (`shmbus`, tools/shmbus): returns its stdout as text. Set
    SHMBUS_CLI to its path; .ci/bindings-python.sh builds it and requires these tests."""
    path = _find_cli()
    if path is None:
        if os.environ.get("SHMBUS_REQUIRE_CLI"):
            pytest.fail("SHMBUS_CLI is not set and no shmbus binary was found")
        pytest.skip("the shmbus CLI is not built (cargo build -p shmbus-cli)")

    def run(*args, input=None):
        r = subprocess.run(
            [path, *args], input=input, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, f"shmbus {' '.join(args)} failed: {r.stderr}"
        return r.stdout

    run.path = path
    return run
