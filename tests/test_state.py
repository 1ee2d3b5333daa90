"""State records: versioned, serial-checked documents, in a file or a remote store
(fsspec's in-memory filesystem here), with a lock that names its holder and expires."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.state import FORMAT_VERSION, StateError, StateStore


@pytest.fixture(params=["file", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield str(tmp_path / "deep" / "example.local.state.json")
    else:
        yield f"memory://flowkit-tests/{uuid.uuid4().hex}/production.state.json"


def test_a_new_record_then_successive_writes(location: str) -> None:
    store = StateStore(location)
    empty = store.read()
    assert (empty.serial, dict(empty.content)) == (0, {})
    first = store.write(empty, {"datasets": {"a": 1}})
    assert (empty.serial, empty.lineage) == (0, "")
    assert first.serial == 1 and len(first.lineage) == 36
    again = StateStore(location).read()
    assert again == first
    second = store.write(again, {"datasets": {"a": 2}})
    assert second.serial == 2 and second.content == {"datasets": {"a": 2}}


def test_a_write_based_on_a_stale_read_is_refused(location: str) -> None:
    store = StateStore(location)
    base = store.write(store.read(), {"n": 1})
    store.write(base, {"n": 2})  # somebody else, in between
    with pytest.raises(StateError, match=r"changed since it was read \(serial 1 -> 2\)"):
        store.write(base, {"n": 3})
    other = StateStore(location).read()
    with pytest.raises(StateError, match="changed since it was read"):
        store.write(type(other)("another-lineage", other.serial, {}), {"n": 4})


def test_the_format_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "lineage": "x",
                                "serial": 3}))  # fmt: skip
    with pytest.raises(StateError, match="state format version 3; this loader reads 1 and 2"):
        StateStore(str(path)).read()
    path.write_text("{not json")
    with pytest.raises(StateError, match="not a state record"):
        StateStore(str(path)).read()


def test_the_lock_names_its_holder_expires_and_breaks_only_on_purpose(location: str) -> None:
    now = [1000.0]
    store = StateStore(location, clock=lambda: now[0])
    lock = store.acquire("ci@runner-1:42", ttl=60)
    assert store.acquire("ci@runner-1:42", ttl=60).holder == lock.holder  # renewed
    with pytest.raises(StateError, match=r"locked, held by ci@runner-1:42 \(expires in 60 s\)$"):
        store.acquire("alice@laptop:7")
    with pytest.raises(StateError, match=r"expires in 60 s\); break it only if that run is gone"):
        store.break_lock()  # its run may still be going
    now[0] += 120
    with pytest.raises(
        StateError,
        match=r"expired 60 s ago\); `flowkit-loader unlock` breaks it if that run is gone",
    ):
        store.acquire("alice@laptop:7")
    assert store.break_lock() == lock
    taken = store.acquire("alice@laptop:7")
    store.release(lock)  # not ours any more: left alone
    assert store.current_lock() == taken
    store.release(taken)
    assert store.current_lock() is None


def test_a_lock_left_by_a_dead_process_of_this_machine_is_taken_over(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    store = StateStore(str(tmp_path / "s.json"))
    store.acquire(f"ci@{socket.gethostname()}:{gone.stdout.strip()}#0a1b2c3d")
    assert store.acquire("me@here:1").holder == "me@here:1"
    # A live process of this machine, or any process of another one, still holds it.
    store.break_lock(force=True)
    store.acquire(StateStore.holder("ci"))
    with pytest.raises(StateError, match="state is locked"):
        store.acquire("me@here:1")
    store.break_lock(force=True)
    store.acquire(f"ci@another-host:{gone.stdout.strip()}")
    with pytest.raises(StateError, match="state is locked"):
        store.acquire("me@here:1")


def test_holders_are_unique_per_run() -> None:
    first, second = StateStore.holder("ci"), StateStore.holder("ci")
    assert first != second and first.rsplit("#", 1)[0] == second.rsplit("#", 1)[0]


def test_a_journal_in_a_remote_store_goes_out_in_chunks() -> None:
    """No append in an object store: new lines are written as numbered objects at most
    every two seconds (never the whole journal again), and read back in order."""
    import fsspec

    from loader.state import Journal, storage_for

    location = f"memory://flowkit-tests/{uuid.uuid4().hex}/prod.state.json"
    store = StateStore(location)
    base = store.write(store.read(), {"datasets": []})
    now = [0.0]
    journal = Journal(storage_for, f"{location}.journal", clock=lambda: now[0])
    journal.start(base)
    for n in range(10):
        journal.append({"op": "grant", "n": n})
        now[0] += 0.5  # a flush every four lines
    fs = fsspec.filesystem("memory")
    root = location.removeprefix("memory://")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(root.rsplit("/", 1)[0], detail=False)) == [
        "prod.state.json", "prod.state.json.journal", "prod.state.json.journal.1",
        "prod.state.json.journal.2",
    ]  # fmt: skip
    # Killed now: what was flushed is there for the next run; the last lines are lost.
    pending = store.pending(base)
    assert pending.id == journal.id
    assert [e["n"] for e in pending.entries] == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    journal.discard()
    assert store.pending(base).entries == []
    assert fs.ls(root.rsplit("/", 1)[0], detail=False) == [f"/{root}"]


def test_a_held_lock_is_renewed_while_its_run_goes_on(tmp_path: Path) -> None:
    import time

    store = StateStore(str(tmp_path / "s.json"))
    with store.held("ci@runner:1#a", ttl=0.4) as lock:
        time.sleep(0.5)  # past the first expiry: renewed twice meanwhile
        current = store.current_lock()
        assert current is not None and current.holder == lock.holder
        assert current.expires > lock.expires
        with pytest.raises(StateError, match="state is locked"):
            store.acquire("other@host:2")
    assert store.current_lock() is None


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    """A write that fails is a StateError naming the file, and leaves no temporary file
    (a directory where the record should be makes the final rename fail, even for root)."""
    from loader.state import FileStorage

    record = tmp_path / "s.json"
    (record / "inside").mkdir(parents=True)
    with pytest.raises(StateError, match=r"s\.json: cannot write: Is a directory$"):
        FileStorage(record).replace(b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(StateError, match=rf"s\.json\.lock: cannot write: {blocked} is not a"):
        FileStorage(blocked / "s.json.lock").create(b"{}")
    assert FileStorage(blocked / "s.json").read() is None  # nothing can be stored there


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "empty"), (b"\xff\xfe", "not UTF-8 text"), (b"held", "not JSON"),
     (b'{"holder": "a\\nb", "expires": 1}', "no valid holder and expiry time"),
     (b'{"holder": "ci@host:1", "expires": NaN}', "no valid holder and expiry time")],
)  # fmt: skip
def test_an_unreadable_lock_is_never_taken_over(tmp_path: Path, content: bytes, why: str) -> None:
    """A lock file that holds no lock (a run killed between creating and writing it, a
    damaged file) still locks: apply refuses, naming the file; unlock removes it."""
    store = StateStore(str(tmp_path / "s.json"))
    (tmp_path / "s.json.lock").write_bytes(content)
    with pytest.raises(StateError, match=rf"s\.json\.lock: not a lock \({why}\); `flowkit"):
        store.acquire("me@here:1")
    broken = store.break_lock()
    assert broken is not None and broken.unreadable == why
    assert store.current_lock() is None and store.break_lock() is None
