"""An operating-system lock for the length of an apply: an exclusive, non-blocking
`flock` on a sidecar file that names its holder.

It guards what the state record's lock cannot: two applies that use different state
records (two clones, two `--state` paths) but write one embedded database. The lock lives
in a file of its own rather than on the database because SQLite takes POSIX record locks
(`fcntl`) on the database file; on Linux those are independent of `flock`, but a sidecar
leaves no doubt on any system, and it can hold the text that names its holder.

No stale-lock handling is needed, or wanted: the kernel releases a `flock` when the last
descriptor of its open file goes, so a holder killed with SIGKILL (or by a power cut of
its machine) leaves at most a file that nobody holds, which the next apply simply takes.
A descriptor from `os.open` is not inherited by child processes (PEP 446), so a `git`
that apply starts cannot keep the lock alive after its parent is gone.

Where there is no `flock` (Windows has no `fcntl`), `LOCKING` is false and `exclusive`
locks nothing and creates nothing: no file that looks like a lock stands there for
a lock that is not taken. The README says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from loader.model import LoaderError, excerpt

if sys.platform != "win32":
    import fcntl

LOCKING = sys.platform != "win32"  # a module attribute, so that tests can turn it off
ROUNDS = 100  # attempts, each lost only to a holder that removed the file meanwhile
MAX_HOLDER_BYTES = 4096  # what a refusal reads of the file: a hand-edited one may be huge


class Held(LoaderError):
    """Another process holds the lock; the message names it."""


def holder_text(who: str | None = None) -> str:
    """What the lock file holds: `user@host:pid` and since when (UTC), as JSON."""
    name = who or os.environ.get("USER", "someone")
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"holder": f"{name}@{socket.gethostname()}:{os.getpid()}", "since": since})


def describe(data: bytes) -> str:
    """The holder a lock file names, for a refusal. A file that names nobody (empty: its
    holder has just opened it and not yet written; or edited by hand) still locks."""
    try:
        named = json.loads(data)
    except ValueError:
        named = None
    if not isinstance(named, dict) or not isinstance(named.get("holder"), str):
        return "its holder unknown"
    since = named.get("since")
    return excerpt(named["holder"]) + (f" since {excerpt(since)}" if isinstance(since, str) else "")


@contextlib.contextmanager
def exclusive(path: str | Path, name: str, who: str | None = None) -> Iterator[None]:
    """Hold the lock on `path` while the block runs, or raise Held at once naming its
    holder (`name` is what is locked, as messages call it). The lock file, and the folders
    made for it, are removed when the block ends, however it ends."""
    if not LOCKING:
        yield
        return
    where = Path(path)
    made = _make_folders(where.parent, name)
    try:
        descriptor = _take(where, name, who)
        try:
            yield
        finally:
            _give_up(where, descriptor)
    finally:
        # Only folders this call made, deepest first, and only when empty: the apply has
        # usually put its database in them, and then they stay. A refused apply leaves
        # the disk as it found it.
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _make_folders(folder: Path, name: str) -> list[Path]:
    """The missing folders above the lock file, made; the list, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        try:
            each.mkdir(exist_ok=True)
        except OSError as error:  # a file where a folder should be, a read-only folder
            for made in missing:
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise LoaderError(f"{name}: cannot create {each}: {_reason(error)}") from None
    return missing


def _take(path: Path, name: str, who: str | None) -> int:
    for _ in range(ROUNDS):
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # its folder removed meanwhile (by a refused apply)
            _make_folders(path.parent, name)  # kept: this apply's database goes there
            continue
        except OSError as error:
            raise LoaderError(f"{name}: cannot open its lock {path}: {_reason(error)}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.pread(descriptor, MAX_HOLDER_BYTES, 0)
            os.close(descriptor)
            raise Held(
                f"{name} is being written by another apply ({describe(held)}): "
                "wait for it to finish"
            ) from None
        except OSError as error:  # a file system without flock
            os.close(descriptor)
            raise LoaderError(f"{name}: cannot lock {path}: {_reason(error)}") from None
        # The holder before us may have removed the file between our open and our lock: a
        # lock on a file that is no longer at `path` keeps nobody out, so open it again.
        if _is_at(descriptor, path):
            # The text only names the holder: if it cannot be written (a full disk) the
            # lock holds all the same, and a refusal says its holder is unknown.
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, holder_text(who).encode(), 0)
            return descriptor
        os.close(descriptor)
    raise LoaderError(f"{name}: cannot take its lock {path}: it keeps being replaced")


def _is_at(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def _give_up(path: Path, descriptor: int) -> None:
    # Removed while still held, then released: whoever opened this file meanwhile finds,
    # once it has the lock, that the file is gone from `path`, and opens a new one.
    with contextlib.suppress(OSError):
        if _is_at(descriptor, path):
            path.unlink()
    os.close(descriptor)  # releases the flock


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
