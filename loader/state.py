"""Where a target's state record lives: a JSON document with a format version, a lineage
id and a serial, in a local file or in a remote store given by URL (through fsspec, for
throwaway CI runners), locked while an apply runs.

This module stores and locks documents; what a record holds (datasets, grants, config,
history) is the planner's business. Every write is atomic where the store allows it (a
local file is replaced whole) and checks that nobody wrote in between: the serial it
read must still be the stored one, and the lineage must be the same record's.

A lock names its holder and expires; an expired lock is reported, never taken over
silently, and can be broken explicitly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from loader.model import LoaderError, excerpt, json_kind

FORMAT_VERSION = 2  # 2: each dataset names the apply that wrote it (record.py)
READABLE_VERSIONS = (1, 2)  # 1's datasets name none: read as written by no known apply
LOCK_TTL = 3600.0  # seconds a lock holds without being renewed


class StateError(LoaderError):
    """The state record cannot be read, written or locked as asked."""


def _parse_json(data: bytes, where: str, what: str, line: int = 1) -> Any:
    """The JSON value in `data` (line `line` of the file at `where`), or a StateError
    saying `what` the file is not and at which line and column it stops being JSON: a
    binary file, a torn write, a hand edit. Never a UnicodeDecodeError or a traceback."""
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        row = line + data.count(b"\n", 0, error.start)
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise StateError(f"{where}:{row}:{column}: {what}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"{where}:{line + error.lineno - 1}:{error.colno}"
        raise StateError(f"{at}: {what}: invalid JSON: {error.msg}") from None
    except RecursionError:
        raise StateError(f"{where}:{line}: {what}: JSON nested too deeply") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise StateError(f"{where}:{line}: {what}: {excerpt(str(error))}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Document:
    """A state record as stored: its identity and serial, and its content."""

    lineage: str
    serial: int
    content: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "lineage": self.lineage,
                "serial": self.serial,
                **self.content,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Document:
        """The record in a stored file's bytes. What the document itself needs (an object
        with a format version, a lineage and a serial) is checked here; its content is
        `record.Record.from_content`'s to check."""
        raw = _parse_json(data, where, "not a state record")
        if not isinstance(raw, dict):
            raise StateError(f"{where}: not a state record: {json_kind(raw)}, not an object")
        if "format_version" not in raw:
            raise StateError(f"{where}: not a state record: no format_version")
        version = raw.pop("format_version")
        if not _is_int(version) or version not in READABLE_VERSIONS:
            raise StateError(
                f"{where}: state format version {excerpt(version)}; this loader reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))}"
            )
        lineage, serial = raw.pop("lineage", None), raw.pop("serial", None)
        # An empty lineage is how a record not written yet is told apart (`new`).
        if not isinstance(lineage, str) or not lineage or not _is_int(serial) or serial < 0:
            raise StateError(f"{where}: a state record needs a lineage and a serial")
        if not isinstance(raw.get(FOLDED, ""), str):
            raise StateError(
                f"{where}: {FOLDED}: a string expected, found {json_kind(raw[FOLDED])}"
            )
        return cls(lineage, serial, raw)

    @classmethod
    def new(cls) -> Document:
        """No record yet: its lineage is given by its first write (a plan made before it
        must still match an apply made before it)."""
        return cls("", 0, {})


UNREADABLE_LOCK = "(unreadable lock)"


@dataclass(frozen=True)
class Lock:
    holder: str
    expires: float
    unreadable: str = ""  # why the lock file holds no lock (empty, not JSON, ...), if so

    @classmethod
    def from_json(cls, data: bytes) -> Lock:
        """The lock a lock file holds. One that holds none (empty: a run killed between
        creating and writing it; binary; edited by hand) still locks, as held by nobody
        known and long expired: a run never takes it over, `unlock` removes it."""
        try:
            raw = json.loads(data.decode())
        except UnicodeDecodeError:
            return cls(UNREADABLE_LOCK, 0.0, "not UTF-8 text")
        except (ValueError, RecursionError):
            return cls(UNREADABLE_LOCK, 0.0, "not JSON" if data.strip() else "empty")
        holder = raw.get("holder") if isinstance(raw, dict) else None
        expires = raw.get("expires") if isinstance(raw, dict) else None
        if (
            not isinstance(holder, str)
            or not holder
            or not holder.isprintable()  # no run writes a line break or a control character
            or not isinstance(expires, (int, float))
            or isinstance(expires, bool)
            or not math.isfinite(expires)
        ):
            return cls(UNREADABLE_LOCK, 0.0, "no valid holder and expiry time")
        return cls(holder, float(expires))

    def describe(self, clock: Callable[[], float]) -> str:
        if self.unreadable:
            return f"unreadable ({self.unreadable})"
        left = self.expires - clock()
        when = f"expires in {_seconds(left)} s" if left > 0 else f"expired {_seconds(-left)} s ago"
        return f"held by {excerpt(self.holder, 80)} ({when})"


def _seconds(value: float) -> str:
    """Seconds as a message says them; a hand-written expiry may be far off (1e300)."""
    return f"{value:.0f}" if value < 1e9 else f"{value:.3g}"


class Storage(Protocol):
    """Bytes at one location: read, replace whole, create only if absent, delete."""

    where: str

    def read(self) -> bytes | None: ...

    def replace(self, data: bytes) -> None: ...

    def create(self, data: bytes) -> bool: ...

    def delete(self) -> None: ...


class FileStorage:
    """A local file, replaced atomically (write beside it, then rename).

    An OS error (a read-only or full disk, a directory where the file should be) is a
    StateError naming the file, and a failed write leaves nothing behind.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(path)

    def read(self) -> bytes | None:
        """The file's bytes, or None when there is none, a path through something that
        is not a directory included (nothing can be stored there: a write says why)."""
        try:
            return self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise StateError(f"{self.where}: a directory, not a file") from None
        except OSError as error:
            raise StateError(f"{self.where}: cannot read: {_reason(error)}") from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            self._make_parent()
            yield
        except OSError as error:
            raise StateError(f"{self.where}: cannot write: {_reason(error)}") from None

    @staticmethod
    def _write(handle: BinaryIO, data: bytes) -> None:
        """The one place bytes go to the disk, and are synced there (where a full or
        read-only disk fails, and where the tests' faulty disk fails on purpose)."""
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

    def _make_parent(self) -> None:
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file has the directory's name (mkdir says only "exists")
            raise StateError(f"{self.where}: cannot write: {parent} is not a directory") from None

    def replace(self, data: bytes) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        with self._writing():
            try:
                with open(temporary, "wb") as handle:
                    self._write(handle, data)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)
                raise

    def append(self, data: bytes) -> None:
        """Add to the end, durably: a journal line is kept once this returns. A failed
        write may leave part of the line, which readers drop (a line ends in \\n)."""
        with self._writing(), open(self.path, "ab") as handle:
            self._write(handle, data)

    def create(self, data: bytes) -> bool:
        with self._writing():
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    self._write(handle, data)
            except BaseException:  # a lock that holds nothing would lock everyone out
                with contextlib.suppress(OSError):
                    self.path.unlink(missing_ok=True)
                raise
        return True

    def delete(self) -> None:
        try:
            self.path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there
        except OSError as error:
            raise StateError(f"{self.where}: cannot remove: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    """An OS error as a message says why: its text, without the path (the message names
    the file once, and a temporary file's name means nothing to the reader)."""
    return error.strerror or type(error).__name__


class RemoteStorage:
    """An object in a remote store through fsspec (s3://, gs://, memory://, ...).

    Object stores have no create-if-absent in general: a lock is written, then read back
    to see whose it is, which settles all but simultaneous takers within one round trip.
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.where = url
        try:
            self.fs, self.path = fsspec.core.url_to_fs(url)
        except ImportError as error:  # the store's fsspec package (s3fs, gcsfs, ...)
            raise StateError(f"{url}: this store needs a missing package: {error}") from None
        except ValueError as error:
            raise StateError(f"{url}: not a store fsspec knows: {error}") from None

    def read(self) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        except OSError as error:  # fsspec's stores report their failures as OSError
            raise StateError(f"{self.where}: cannot read: {excerpt(str(error))}") from None
        return data

    def replace(self, data: bytes) -> None:
        parent = self.path.rsplit("/", 1)[0]
        try:
            if parent and parent != self.path:
                self.fs.makedirs(parent, exist_ok=True)
            self.fs.pipe_file(self.path, data)
        except OSError as error:
            raise StateError(f"{self.where}: cannot write: {excerpt(str(error))}") from None

    def create(self, data: bytes) -> bool:
        try:
            exists = self.fs.exists(self.path)
        except OSError as error:
            raise StateError(f"{self.where}: cannot read: {excerpt(str(error))}") from None
        if exists:
            return False
        self.replace(data)
        return self.read() == data

    def delete(self) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            return  # already gone is gone
        except OSError as error:
            raise StateError(f"{self.where}: cannot remove: {excerpt(str(error))}") from None


def storage_for(location: str) -> Storage:
    """A path, or a URL with a scheme (other than file://) for a remote store."""
    if "://" in location and not location.startswith("file://"):
        return RemoteStorage(location)
    return FileStorage(location.removeprefix("file://"))


class StateStore:
    """One target's state record and its lock."""

    def __init__(
        self,
        location: str,
        *,
        clock: Callable[[], float] = time.time,
        storage: Callable[[str], Storage] = storage_for,
    ) -> None:
        self.location = location
        self.record = storage(location)
        self.lock_storage = storage(f"{location}.lock")
        self.storage = storage
        self.clock = clock

    def read(self) -> Document:
        """The stored record, or a new empty one (serial 0) when there is none."""
        data = self.record.read()
        if data is None:
            return Document.new()
        return Document.from_json(data, self.location)

    def journal(self) -> Journal:
        return Journal(self.storage, f"{self.location}.journal")

    def pending(self, base: Document) -> Pending:
        """What an interrupted apply journaled over `base` and never folded in."""
        return journal_entries(self.journal().read(), base, f"{self.location}.journal")

    def write(
        self, previous: Document, content: Mapping[str, Any], folded: str | None = None
    ) -> Document:
        """Store `content` as the successor of `previous`, noting the journal folded into
        it; refused when the stored record is no longer `previous` (someone else wrote
        since it was read)."""
        data = self.record.read()
        current = None if data is None else Document.from_json(data, self.location)
        if current is not None and (
            current.lineage != previous.lineage or current.serial != previous.serial
        ):
            raise StateError(
                f"{self.location}: the state record changed since it was read (serial "
                f"{previous.serial} -> {current.serial}); plan again"
            )
        lineage = previous.lineage or str(uuid.uuid4())
        noted = {**content, FOLDED: folded} if folded else dict(content)
        successor = Document(lineage, previous.serial + 1, noted)
        self.record.replace(successor.to_json().encode())
        return successor

    # -- the lock -------------------------------------------------------------------------

    @staticmethod
    def holder(who: str | None = None) -> str:
        """`who@host:pid#run`: unique per acquisition, so that two runs in one process
        never take each other's lock for their own."""
        name = who or os.environ.get("USER", "someone")
        return f"{name}@{socket.gethostname()}:{os.getpid()}#{uuid.uuid4().hex[:8]}"

    def current_lock(self) -> Lock | None:
        data = self.lock_storage.read()
        return None if data is None else Lock.from_json(data)

    def acquire(self, holder: str, ttl: float = LOCK_TTL) -> Lock:
        """Take the lock, or fail naming who holds it (an expired lock included: it is
        broken only on purpose, with `break_lock`, unless its holder was a process of
        this machine that is gone)."""
        lock = Lock(holder, self.clock() + ttl)
        payload = json.dumps({"holder": lock.holder, "expires": lock.expires}).encode()
        if self.lock_storage.create(payload):
            return lock
        existing = self.current_lock()
        if existing is not None and (existing.holder == holder or _dead_here(existing.holder)):
            # Ours (renewed), or left by a process of this machine that no longer runs (a
            # kill -9): nobody else can be using it. Read back: another run may have
            # taken it over at the same moment.
            self.lock_storage.replace(payload)
            if self.current_lock() == lock:
                return lock
            existing = self.current_lock()
        if existing is not None and existing.unreadable:
            raise StateError(
                f"{self.lock_storage.where}: not a lock ({existing.unreadable}); "
                "`flowkit-loader unlock` removes it if no run is taking it"
            )
        described = existing.describe(self.clock) if existing else "held"
        stale = existing is not None and existing.expires < self.clock()
        hint = "; `flowkit-loader unlock` breaks it if that run is gone" if stale else ""
        raise StateError(f"{self.location}: state is locked, {described}{hint}")

    @contextlib.contextmanager
    def held(self, holder: str, ttl: float = LOCK_TTL) -> Iterator[Lock]:
        """The lock, renewed every quarter of its life while the block runs (an apply
        may take longer than one), and released after it."""
        lock = self.acquire(holder, ttl)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 4):
                with contextlib.suppress(LoaderError, OSError):  # the next round tries again
                    self.acquire(holder, ttl)

        keeper = threading.Thread(target=renew, name="state-lock", daemon=True)
        keeper.start()
        try:
            yield lock
        except BaseException:
            stop.set()
            keeper.join()
            # The error in flight says what went wrong; a lock that cannot be removed
            # as well (a read-only disk) must not hide it. Its process is gone after
            # this, so the next run of this machine takes the lock over.
            with contextlib.suppress(StateError):
                self.release(lock)
            raise
        stop.set()
        keeper.join()
        self.release(lock)

    def release(self, lock: Lock) -> None:
        existing = self.current_lock()
        if existing is not None and existing.holder == lock.holder:
            self.lock_storage.delete()

    def break_lock(self, force: bool = False) -> Lock | None:
        """Remove the lock and return it (to say whose it was). A lock that has not
        expired is removed only with `force`: its run may still be going."""
        existing = self.current_lock()
        if existing is None:
            return None  # nothing to remove (and a lock taken meanwhile is not ours to break)
        if existing.expires >= self.clock() and not force:
            raise StateError(
                f"{self.location}: the lock is {existing.describe(self.clock)}; break it "
                "only if that run is gone (--force)"
            )
        self.lock_storage.delete()
        return existing


def _dead_here(holder: str) -> bool:
    """Whether a lock holder (`who@host:pid`) is a process of this host that is gone."""
    where, _, pid = holder.partition("#")[0].rpartition(":")
    if where.rpartition("@")[2] != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


FOLDED = "folded_journal"  # the record's note of the last journal folded into it
REMOTE_FLUSH_SECONDS = 2.0


class Journal:
    """The changes of a running apply, one JSON line each, appended as each completes, so
    that an apply killed at any point loses at most what was in flight. The next run
    folds a journal left behind into the record (`StateStore.pending`).

    A local file gets each line appended and synced at once. A remote store has no
    append: new lines go out as one more numbered object (`.1`, `.2`, ...) at most every
    two seconds, so a kill loses up to that much, which the next run sends again (every
    change is safe to resend), and nothing already written is written twice.
    """

    def __init__(
        self,
        storage: Callable[[str], Storage],
        location: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.location = location
        self.head = storage(location)
        self.appends = getattr(self.head, "append", None)
        self.clock = clock
        self.id = uuid.uuid4().hex
        self.waiting: list[bytes] = []
        self.chunks = 0
        self.flushed = 0.0
        self.closed = False
        self.durable = 0  # entries kept by the store (a remote store's waiting ones are not)
        self.broken = ""  # why appending stopped (a failed write), if it did
        self._lock = threading.Lock()

    def start(self, base: Document) -> None:
        """Begin a journal over `base` (the record it amends)."""
        self.discard_chunks()
        header = {"id": self.id, "lineage": base.lineage, "serial": base.serial}
        self.head.replace(json.dumps(header).encode() + b"\n")
        self.flushed = self.clock()

    def append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True).encode() + b"\n"
        with self._lock:
            if self.closed:
                raise StateError("the journal was already folded into the record")
            if self.broken:
                raise StateError(self.broken)
            if self.appends is not None:
                try:
                    self.appends(line)
                except StateError as error:
                    # The file may end in part of this line now: another line after it
                    # would make that part a damaged line inside the journal.
                    self.broken = f"{error} (no line is added after a failed one)"
                    raise
                self.durable += 1
                return
            self.waiting.append(line)
            if self.clock() - self.flushed >= REMOTE_FLUSH_SECONDS:
                self._flush()

    def _flush(self) -> None:
        if self.waiting:
            # Numbered only once stored: a failed upload leaves no gap in the numbers.
            self.storage(f"{self.location}.{self.chunks + 1}").replace(b"".join(self.waiting))
            self.chunks += 1
            self.durable += len(self.waiting)
            self.waiting = []
        self.flushed = self.clock()

    def read(self) -> bytes | None:
        """The journal as written: its head, then its chunks in order."""
        data = self.head.read()
        if data is None or self.appends is not None:
            return data
        parts = [data]
        for chunk in self._chunks():
            parts.append(chunk.read() or b"")
        return b"".join(parts)

    def _chunks(self) -> Iterator[Storage]:
        number = 1
        while True:
            chunk = self.storage(f"{self.location}.{number}")
            if chunk.read() is None:
                return
            yield chunk
            number += 1

    def discard_chunks(self) -> None:
        if self.appends is None:
            for chunk in list(self._chunks()):
                chunk.delete()

    def discard(self) -> None:
        with self._lock:
            self.closed = True
            self.discard_chunks()
            self.head.delete()


@dataclass(frozen=True)
class Pending:
    """A journal left by an interrupted apply, not yet folded into the record."""

    id: str | None
    entries: list[dict[str, Any]]
    lines: list[int] = field(default_factory=list)  # each entry's line in the journal


def journal_entries(data: bytes | None, base: Document, where: str) -> Pending:
    """The entries of a journal left over `base`; a torn last line (a kill mid-write) is
    dropped; a journal already folded into `base` (a kill between writing the record
    and removing the journal) is empty; a journal over another record is refused.

    Each line must be a JSON object and the first a header (what the entries say is
    `record.replay`'s to check): a damaged journal is refused at its line, never
    replayed in part."""
    lines = (data or b"").split(b"\n")
    complete = lines[:-1]  # whatever follows the last newline was never finished
    if not complete:
        return Pending(None, [])
    header = _parse_json(complete[0], where, "unreadable journal")
    if not (
        isinstance(header, dict)
        and isinstance(header.get("id"), str)
        and isinstance(header.get("lineage"), str)
        and _is_int(header.get("serial"))
    ):
        raise StateError(
            f"{where}:1: unreadable journal: the first line is not a header (an object "
            "with an id, a lineage and a serial)"
        )
    entries, numbers = [], []
    for number, line in enumerate(complete[1:], start=2):
        if not line.strip():
            continue
        entry = _parse_json(line, where, "unreadable journal", number)
        if not isinstance(entry, dict):
            raise StateError(
                f"{where}:{number}: unreadable journal: an entry must be an object, not "
                f"{json_kind(entry)}"
            )
        entries.append(entry)
        numbers.append(number)
    if header["id"] == base.content.get(FOLDED):
        return Pending(header["id"], [])
    if header["lineage"] != base.lineage or header["serial"] != base.serial:
        raise StateError(
            f"{where}: a journal of another state record (lineage "
            f"{excerpt(header['lineage'])}, serial {excerpt(header['serial'])}); remove it if "
            "that record is gone"
        )
    return Pending(header["id"], entries, numbers)
