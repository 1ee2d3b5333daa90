"""A disk that fills up or turns read-only, or a store that refuses an upload, during
apply: the first failed journal or record write stops new work, the summary says what
reached the backend and what could not be recorded, exit 1, one line, no temporary file
left; the next apply (with space again) ends with exactly the desired state.

The faults are injected where bytes reach the storage: a local file whose writes fail
with the errno a disk gives (`FileStorage._write`, after writing part of the bytes, as a
filling disk does), and an fsspec store whose uploads fail. CI runs as root, where a
read-only folder does not stop writes, so a real read-only disk cannot be used there.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from loader import run, state
from loader.state import FileStorage, StateStore, Storage, storage_for
from tests.scenarios import assert_exactly_desired, cli_run, prepared

FAULTS = {
    errno.ENOSPC: "No space left on device",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
}


class Disk:
    """Which writes fail: the journal's lines from the `journal_from`-th on (its header
    is not a line), and every write of the record itself when `record` is set."""

    def __init__(self, code: int, journal_from: int | None = None, record: bool = False):
        self.code = code
        self.journal_from = journal_from
        self.record = record
        self.lines = 0

    def fails(self, path: str) -> bool:
        if path.endswith(".journal"):
            self.lines += 1
            return self.journal_from is not None and self.lines > self.journal_from
        return self.record and path.endswith("state.json")

    def error(self) -> OSError:
        return OSError(self.code, os.strerror(self.code))


class FaultyFile(FileStorage):
    """A local file on a disk that fails as `disk` says, after writing half the bytes."""

    def __init__(self, path: str, disk: Disk) -> None:
        super().__init__(path)
        self.disk = disk

    def _write(self, handle: BinaryIO, data: bytes) -> None:  # type: ignore[override]
        if self.disk.fails(self.where):
            handle.write(data[: len(data) // 2])
            handle.flush()
            raise self.disk.error()
        FileStorage._write(handle, data)


@pytest.fixture
def faulty_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Disk], None]]:
    """Put the state record of the next run on a faulty disk (until undone)."""

    def use(disk: Disk) -> None:
        def storage(location: str) -> Storage:
            if "://" in location:
                return storage_for(location)
            return FaultyFile(location, disk)

        class FaultyStore(StateStore):
            def __init__(self, location: str, **kwargs: Any) -> None:
                super().__init__(location, storage=storage, **kwargs)

        monkeypatch.setattr(run, "StateStore", FaultyStore)

    yield use
    monkeypatch.undo()


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic replaces (`.name.pid.hex`) left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_a_journal_write_that_fails_stops_new_work_and_nothing_written_is_lost(
    tmp_path: Path, code: int, faulty_disk: Callable[[Disk], None]
) -> None:
    manifest, env = prepared(tmp_path, "fresh")
    faulty_disk(Disk(code, journal_from=10))
    status, output = cli_run("apply", str(manifest), "--yes", "-q", env=env)
    assert status == 1, output
    record = manifest.parent / ".flowkit" / "example.local.state.json"
    assert (
        f"  stopped: the journal could not be written: {record}.journal: cannot write: "
        f"{FAULTS[code]}; no change was started after it\n"
    ) in output
    summary = output.splitlines()[-1]
    assert summary.startswith("Apply incomplete: ") and " 0 failed, " in summary, output
    done = int(summary.split(": ")[1].split(" done")[0])
    assert 10 <= done <= 10 + 2 * 4  # the writes in flight when it failed, no more
    assert "Traceback" not in output
    # The record was written: every change done is in it, none reported failed.
    assert not Path(f"{record}.journal").exists() and not Path(f"{record}.lock").exists()
    assert leftovers(record.parent) == []
    faulty_disk(Disk(code))  # space again
    status, output = cli_run("apply", str(manifest), "--yes", "-q", env=env)
    assert status == 0, output
    assert_exactly_desired(manifest, env, tmp_path / "example.db")


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_a_record_write_that_fails_keeps_the_journal_for_the_next_apply(
    tmp_path: Path, code: int, faulty_disk: Callable[[Disk], None]
) -> None:
    manifest, env = prepared(tmp_path, "update")
    faulty_disk(Disk(code, record=True))
    status, output = cli_run("apply", str(manifest), "--yes", "-q", env=env)
    record = manifest.parent / ".flowkit" / "example.local.state.json"
    assert status == 1, output
    assert output.splitlines()[-1] == (
        f"error: {record}: cannot write: {FAULTS[code]}: 12 changes reached the backend and "
        "the journal holds them all (the next apply folds it into the record); 0 failed, 0 "
        "skipped. Apply again once the state record can be written"
    )
    assert Path(f"{record}.journal").exists() and not Path(f"{record}.lock").exists()
    assert leftovers(record.parent) == []  # the record's temporary file is gone
    faulty_disk(Disk(code))
    status, output = cli_run("plan", str(manifest), "--detailed-exitcode", env=env)
    assert status == 0, output  # the journal folded in: nothing left to do
    assert_exactly_desired(manifest, env, tmp_path / "example.db")


def test_a_full_disk_for_journal_and_record_loses_only_the_record_of_what_was_sent(
    tmp_path: Path, faulty_disk: Callable[[Disk], None]
) -> None:
    manifest, env = prepared(tmp_path, "fresh")
    faulty_disk(Disk(errno.ENOSPC, journal_from=20, record=True))
    status, output = cli_run("apply", str(manifest), "--yes", "-q", env=env)
    assert status == 1, output
    line = output.splitlines()[-1]
    assert line.startswith("error: ") and ": cannot write: No space left on device: " in line
    assert "of them could not be recorded (the next apply plans them again" in line, line
    assert leftovers(tmp_path / "manifests" / ".flowkit") == []
    faulty_disk(Disk(errno.ENOSPC))
    status, output = cli_run("apply", str(manifest), "--yes", "-q", env=env)
    assert status == 0, output
    assert_exactly_desired(manifest, env, tmp_path / "example.db")


class RefusingMemory(MemoryFileSystem):
    """An in-memory object store whose uploads fail from the `fail_from`-th on, when set
    (its objects live as long as the process, like a bucket)."""

    protocol = "refusingmemory"
    fail_from: int | None = None
    record_fails = False
    uploads = 0

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        cls.uploads += 1
        journal_chunk = ".journal." in path
        if (journal_chunk and cls.fail_from is not None and cls.uploads >= cls.fail_from) or (
            cls.record_fails and path.endswith("record.json")
        ):
            raise PermissionError(errno.EACCES, "upload refused (403 Forbidden)")
        super().pipe_file(path, value, *args, **kwargs)


def test_a_failed_upload_to_a_remote_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsspec.register_implementation(RefusingMemory.protocol, RefusingMemory, clobber=True)
    monkeypatch.setattr(state, "REMOTE_FLUSH_SECONDS", 0.0)  # every line its own upload
    manifest, env = prepared(tmp_path, "fresh")
    url = f"{RefusingMemory.protocol}://state-{tmp_path.name}/record.json"
    RefusingMemory.uploads, RefusingMemory.fail_from = 0, 15
    RefusingMemory.record_fails = True
    status, output = cli_run("apply", str(manifest), "--yes", "-q", "--state", url, env=env)
    assert status == 1, output
    line = output.splitlines()[-1]
    assert line.startswith(f"error: {url}: cannot write: ") and "upload refused" in line, line
    assert "of them could not be recorded" in line and "Traceback" not in output
    RefusingMemory.fail_from, RefusingMemory.record_fails = None, False
    status, output = cli_run("apply", str(manifest), "--yes", "-q", "--state", url, env=env)
    assert status == 0, output
    status, output = cli_run("plan", str(manifest), "--detailed-exitcode", "--state", url, env=env)
    assert status == 0, output
