"""Run a flowkit-loader command in this process and kill it (SIGKILL, no clean-up) at a
chosen point: the harness of the crash tests.

    python -m tests.crashing KILL_POINT apply MANIFEST --yes ...

KILL_POINT is `WHEN:CALL:N`: `after` the N-th call of the Backend method CALL returned
(the server did the work; the journal has not heard of it), `before` it is sent, or
`during` it (a timer fires while it is in flight, or
before its result is used when the call is quicker); or `journal:N`, halfway through writing
the N-th journal line; or `fold`, after the record is written and before its journal is
removed. The backend is wrapped, not replaced: every call reaches the real
backend (the embedded one or `serve` over HTTP).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import loader.applying
import loader.state
from loader.cli import main

WRITES = {
    "replace_setup", "create_entity", "update_entity", "delete_entity", "create_dataset",
    "update_dataset", "delete_dataset", "grant", "revoke",
}  # fmt: skip


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingBackend:
    """A backend that dies at its kill point."""

    def __init__(self, inner: Any, when: str, call: str, n: int) -> None:
        self.inner = inner
        self.when, self.call, self.n = when, call, n
        self.count = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.call:
            return attribute

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.count += 1
                mine = self.count == self.n
            if mine and self.when == "before":
                die()
            if mine and self.when == "during":
                threading.Timer(0.005, die).start()
            result = attribute(*args, **kwargs)
            if mine and self.when == "after":
                die()
            if mine and self.when == "during":
                threading.Event().wait()  # the call was quicker than the timer: await it
            return result

        return wrapped


def kill_journal_at(n: int) -> None:
    original: Callable[..., None] = loader.state.Journal.append
    count = [0]

    def append(self: loader.state.Journal, entry: Any) -> None:
        count[0] += 1
        if count[0] == n:  # a torn line: half of it written, then death
            storage = self.head
            assert isinstance(storage, loader.state.FileStorage)
            line = json.dumps(entry).encode()
            with self._lock:  # as a real append: no other thread writes meanwhile
                storage.append(line[: len(line) // 2])
                die()
        original(self, entry)

    loader.state.Journal.append = append  # type: ignore[method-assign]


def arm(point: str) -> None:
    parts = point.split(":")
    if parts[0] == "journal":
        kill_journal_at(int(parts[1]))
        return
    if parts[0] == "fold":  # the record written, its journal not yet removed
        loader.state.Journal.discard = lambda self: die()  # type: ignore[method-assign]
        return
    when, call, n = parts[0], parts[1], int(parts[2])
    assert when in ("before", "during", "after") and call in WRITES, point
    opened = loader.applying.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        connection = opened(*args, **kwargs)
        connection.backend = KillingBackend(connection.backend, when, call, n)
        return connection

    loader.applying.connect = connect


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.argv = ["flowkit-loader", *sys.argv[2:]]
    main()
