"""One writer per embedded backend: an apply of a `local:` target holds an OS lock
(`flock` on `<db>.apply.lock`) from before it opens the database until it ends, so that a
second apply refuses at once even when it uses another state record, whose own lock
cannot see the first's.

The first apply runs in a process of its own, held in the middle by tests/holding.py
(no timing: it waits for a file the test creates); the second goes through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from loader import applying
from loader.backends import oslock
from loader.backends.local import APPLY_LOCK_SUFFIX
from loader.cli import cli
from loader.model import LoaderError
from tests.conftest import ROOT
from tests.statecases import snapshot, write_base_manifest

TIMEOUT = 120  # seconds any one wait may take: a bound, not an expectation
SINCE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


class Holder:
    """A process that holds the embedded backend's lock (tests/holding.py) until `go`."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.ready, self.go = directory / "holder.ready", directory / "holder.go"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.holding", str(self.ready), str(self.go), *args],
            cwd=ROOT, env={**os.environ, "USER": "first-apply"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                out, err = self.process.communicate()
                pytest.fail(f"the holder never held (exit {self.process.returncode}): {out}{err}")
            time.sleep(0.02)

    @property
    def name(self) -> str:
        return f"first-apply@{socket.gethostname()}:{self.process.pid}"

    def finish(self) -> tuple[int, str]:
        self.go.touch()
        out, err = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, out + err

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=TIMEOUT)


@pytest.fixture
def holders() -> Iterator[Callable[..., Holder]]:
    """Start holders; any left running at the end is killed (a failed test's)."""
    started: list[Holder] = []

    def start(directory: Path, *args: str) -> Holder:
        started.append(Holder(directory, *args))
        return started[-1]

    yield start
    for holder in started:
        holder.close()


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args} crashed: {result.stderr}") from result.exception
    return result


def refusal(db: Path, holder: Holder) -> str:
    """The second apply's line, with the holder's start time as its lock file says."""
    since = json.loads((db.parent / (db.name + APPLY_LOCK_SUFFIX)).read_text())["since"]
    assert re.fullmatch(SINCE, since), since
    return (
        f"error: local:{db} is being written by another apply ({holder.name} since {since}): "
        "wait for it to finish"
    )


def test_a_second_apply_with_another_state_record_refuses_while_the_first_writes(
    tmp_path: Path, holders: Callable[..., Holder]
) -> None:
    manifest = write_base_manifest(tmp_path)
    db = tmp_path / "backend" / "test.db"
    second = tmp_path / "second" / "record.json"  # the other clone's record, and folder
    first = holders(tmp_path, "apply", str(manifest), "--yes", "-q")  # held at its 1st write
    before = snapshot(tmp_path)
    result = run("apply", str(manifest), "--yes", "--state", str(second))
    assert (result.stderr.splitlines(), result.exit_code) == ([refusal(db, first)], 1)
    assert result.stdout == ""  # refused before a plan was shown
    # Nothing written: not the database, not the other record (nor its folder or lock).
    assert snapshot(tmp_path) == before
    assert not second.parent.exists()
    # The commands that only read do not take the lock.
    for command in ("plan", "status"):
        shown = run(command, str(manifest), "--state", str(second))
        assert shown.exit_code == 0, (command, shown.stderr)
    assert run("validate", str(manifest)).exit_code == 0
    code, output = first.finish()
    assert (code, "Apply complete" in output) == (0, True), output
    assert not (db.parent / (db.name + APPLY_LOCK_SUFFIX)).exists()
    # Now the second clone may write: it takes over what the first loaded (another
    # record's datasets are not its own) and applies, with nothing left to do.
    assert run("import", str(manifest), "--state", str(second)).exit_code == 0
    applied = run("apply", str(manifest), "--yes", "--state", str(second))
    assert (applied.exit_code, applied.stderr) == (0, ""), applied.stdout
    assert second.exists()


def test_the_lock_alone_refuses_and_once_released_the_apply_succeeds(
    tmp_path: Path, holders: Callable[..., Holder]
) -> None:
    manifest = write_base_manifest(tmp_path)
    db = tmp_path / "backend" / "test.db"
    holder = holders(tmp_path, "lock", f"local:{db}")
    before = snapshot(tmp_path)
    result = run("apply", str(manifest), "--yes")
    assert (result.stderr.splitlines(), result.exit_code) == ([refusal(db, holder)], 1)
    assert snapshot(tmp_path) == before
    assert not db.exists() and not (tmp_path / "state").exists()
    assert holder.finish() == (0, "")  # the lock alone: nothing to say
    result = run("apply", str(manifest), "--yes", "-q")
    assert (result.exit_code, result.stderr) == (0, ""), result.stdout
    assert db.exists() and (tmp_path / "state" / "record.json").exists()
    assert not Path(f"{db}{APPLY_LOCK_SUFFIX}").exists()  # the lock file removed


def test_a_holder_killed_with_sigkill_holds_nothing(
    tmp_path: Path, holders: Callable[..., Holder]
) -> None:
    """The kernel releases a flock with its process: the file left behind is taken."""
    manifest = write_base_manifest(tmp_path)
    db = tmp_path / "backend" / "test.db"
    holder = holders(tmp_path, "apply", str(manifest), "--yes", "-q")
    lock_file = db.parent / (db.name + APPLY_LOCK_SUFFIX)
    holder.process.kill()
    assert holder.process.wait(timeout=TIMEOUT) == -9
    assert holder.name in lock_file.read_text()  # nobody cleaned up: the kernel released
    # The same record (its lock left by a dead process of this machine is taken over):
    # the rerun finishes what the killed apply set out to do.
    result = run("apply", str(manifest), "--yes", "-q")
    assert (result.exit_code, result.stderr) == (0, ""), result.stdout
    assert not lock_file.exists()
    again = run("plan", str(manifest), "--detailed-exitcode")
    assert again.exit_code == 0, again.stdout


def refuse(error: BaseException) -> Callable[[Any], bool]:
    def confirm(plan: Any) -> bool:
        raise error

    return confirm


def interrupt_after_first(outcome: Any) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("an error", {"confirm": refuse(RuntimeError("boom"))}),
        ("Ctrl-C before writing", {"confirm": refuse(KeyboardInterrupt())}),
        ("a refusal", {"confirm": refuse(LoaderError("no"))}),
        ("Ctrl-C while writing", {"progress": interrupt_after_first}),
    ],
)
def test_the_lock_is_released_however_the_apply_ends(
    tmp_path: Path, how: str, kwargs: dict[str, Any]
) -> None:
    manifest = write_base_manifest(tmp_path)
    db = tmp_path / "backend" / "test.db"
    ended: BaseException | None = None
    try:
        applying.apply(manifest, parallelism=1, **kwargs)
    except (RuntimeError, KeyboardInterrupt, LoaderError) as error:
        ended = error
    # Ctrl-C while writing may also end with a result (the writes in flight finished).
    assert ended is not None or "confirm" not in kwargs, how
    assert not (db.parent / (db.name + APPLY_LOCK_SUFFIX)).exists(), how
    # Taken again at once, in this same process: nothing of the first is left holding it.
    with oslock.exclusive(str(db) + APPLY_LOCK_SUFFIX, f"local:{db}"):
        pass
    applied = applying.apply(manifest)
    assert applied.result.ok, how


# -- the lock itself -------------------------------------------------------------------


def test_a_second_taker_in_one_process_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "x.db.apply.lock"
    with oslock.exclusive(path, "local:x.db", who="me"):
        named = json.loads(path.read_text())
        assert named["holder"] == f"me@{socket.gethostname()}:{os.getpid()}"
        assert re.fullmatch(SINCE, named["since"])
        with pytest.raises(oslock.Held) as refused, oslock.exclusive(path, "local:x.db"):
            pass
        assert str(refused.value) == (
            f"local:x.db is being written by another apply ({named['holder']} since "
            f"{named['since']}): wait for it to finish"
        )
        assert json.loads(path.read_text()) == named  # the refused taker wrote nothing
    assert not path.exists()


@pytest.mark.parametrize("content", [b"", b"\xff\x00garbage", b'{"holder": 7}', b"[]"])
def test_a_lock_file_that_names_nobody_still_locks(tmp_path: Path, content: bytes) -> None:
    """Empty: its holder has just opened it; anything else: edited by hand."""
    path = tmp_path / "x.db.apply.lock"
    with oslock.exclusive(path, "local:x.db"):
        path.write_bytes(content)
        with (
            pytest.raises(oslock.Held, match=r"\(its holder unknown\)"),
            oslock.exclusive(path, "local:x.db"),
        ):
            pass


def test_a_lock_file_left_by_a_dead_holder_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "x.db.apply.lock"
    path.write_text('{"holder": "gone@elsewhere:1", "since": "2020-01-01T00:00:00Z"}')
    with oslock.exclusive(path, "local:x.db", who="me"):
        assert json.loads(path.read_text())["holder"].startswith("me@")
    assert not path.exists()


def test_folders_made_for_the_lock_are_removed_when_nothing_went_in(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.db.apply.lock"
    with pytest.raises(RuntimeError), oslock.exclusive(path, "local:x.db"):
        assert path.exists()
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with oslock.exclusive(path, "local:x.db"):
        (path.parent / "x.db").write_bytes(b"")  # what an apply puts there stays
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.db"]


def test_a_lock_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "x.db.apply.lock"
    with pytest.raises(LoaderError) as refused, oslock.exclusive(path, "local:x.db"):
        pass
    assert str(refused.value) == f"local:x.db: cannot open its lock {path}: Not a directory"


def test_without_flock_nothing_is_locked_and_nothing_pretends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no flock (Windows), no lock file stands for a lock not taken."""
    monkeypatch.setattr(oslock, "LOCKING", False)
    path = tmp_path / "a" / "x.db.apply.lock"
    with oslock.exclusive(path, "local:x.db"), oslock.exclusive(path, "local:x.db"):
        assert list(tmp_path.iterdir()) == []
