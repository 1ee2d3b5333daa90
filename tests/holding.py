"""Hold an apply of an embedded backend in the middle, in a process of its own: the
harness of the one-writer tests (tests/cross_cutting/test_local_writers.py).

    python -m tests.holding READY GO apply MANIFEST --yes ...   # a real apply
    python -m tests.holding READY GO lock local:PATH            # apply's lock alone

`apply` runs the CLI and holds every backend write, from the first one on: by then the
apply holds its locks and has planned. `lock` takes the lock the way apply does
(`loader.backends.factory.writer_lock`) and writes nothing else. Either creates READY when
it holds, then waits for GO to exist; a test that never creates GO costs at most WAIT
seconds (exit 3), never a hung run.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import loader.applying
from loader.backends.factory import writer_lock
from loader.cli import main
from loader.model import Target
from tests.crashing import WRITES

WAIT = 120.0  # seconds


def hold(ready: Path, go: Path) -> None:
    ready.touch()
    deadline = time.monotonic() + WAIT
    while not go.exists():
        if time.monotonic() > deadline:
            print(f"holding: {go} never appeared", file=sys.stderr)
            sys.exit(3)
        time.sleep(0.02)


class HeldBackend:
    """A backend whose writes wait until GO: the first one says READY."""

    def __init__(self, inner: Any, ready: Path, go: Path) -> None:
        self.inner = inner
        self.ready, self.go = ready, go
        self.lock = threading.Lock()  # the writer threads wait on one hold, not each its own

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in WRITES:
            return attribute

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                if not self.go.exists():
                    hold(self.ready, self.go)
            return attribute(*args, **kwargs)

        return wrapped


def arm_apply(ready: Path, go: Path) -> None:
    opened = loader.applying.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        connection = opened(*args, **kwargs)
        connection.backend = HeldBackend(connection.backend, ready, go)
        return connection

    loader.applying.connect = connect


if __name__ == "__main__":
    ready, go, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if mode == "lock":
        with writer_lock(Target("holding", sys.argv[4], "unused")):
            hold(ready, go)
    else:
        assert mode == "apply", mode
        arm_apply(ready, go)
        sys.argv = ["flowkit-loader", *sys.argv[3:]]
        main()
