"""`flowkit-loader check` and `unlock`: a target's surroundings tested or repaired without
planning. `check` makes one finding per thing checked (the backend, each role's
credential, each scope's reader, the state store) the way plan and apply will use them;
`unlock` breaks a state lock whose run is gone.

What plan and apply require is asked of the same code where it exists (a role's scopes
through the backend's `preflight`, the reader's view through the run's own test, the
record through `run.read_record`), so that check passes exactly when they would; and
only through the Backend protocol, so that it checks any kind of target alike. Nothing
here prints; the CLI renders the findings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from loader.backends.factory import Opening, open_backend
from loader.contract import READ_FREE_DATA, SEES_EVERYTHING
from loader.model import (
    Backend,
    BackendError,
    EntityKind,
    Identity,
    LoaderError,
    Manifest,
    Role,
    Target,
    plural,
)
from loader.run import (
    check_reader_sees_everything,
    is_targets_record,
    other_target_message,
    read_record,
    unset_variables,
)
from loader.state import Document, Lock, StateError, StateStore

PROBE_SUFFIX = ".check-probe"
# Any category id: a live read only has to show that the server accepts the token
# (404 for an id it does not hold is an answer).
PROBE_CATEGORY = "flowkit-loader-check"
PROBE_LOCK_TTL = 60.0
WHERE_ELSE = "or give another place with --state or the target's state:"


@dataclass(frozen=True)
class Finding:
    """One thing checked: the target, a role's credential, a scope's reader, the state."""

    name: str
    ok: bool
    text: str
    nested: bool = True  # shown under its target

    def line(self) -> str:
        indent = "  " if self.nested else ""
        return f"{indent}{self.name}: {self.text if self.ok else 'error: ' + self.text}"


def check(
    manifest: Manifest,
    target: str | None = None,
    *,
    state: str | None = None,
    wait_ready: float = 0,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Finding]:
    """The findings for `manifest`'s target, as each is made (a slow server shows which
    check it holds up)."""
    chosen = manifest.target(target)
    unset = unset_variables(chosen.url)
    if unset:
        needs = f"{', '.join(unset)} not set in the environment (its url needs it)"
        yield Finding(chosen.name, False, needs, nested=False)
    else:
        try:
            opening = Opening(environ=environ, read_only=True)  # check creates nothing
            backend = open_backend(chosen, manifest.setup(chosen.name), opening)
        except LoaderError as error:
            yield Finding(chosen.name, False, str(error), nested=False)
        else:
            with backend:
                yield from _backend(chosen, backend, wait_ready)
    yield _state(chosen, state or chosen.state)


def _backend(target: Target, backend: Backend, wait_ready: float) -> Iterator[Finding]:
    try:
        answered = backend.wait_ready(wait_ready)
    except LoaderError as error:
        ready = False
        yield Finding(target.name, False, str(error), nested=False)
    else:
        ready = True
        yield Finding(target.name, True, answered, nested=False)
    # A backend without credentials (the embedded one) has no identities to check.
    for role, identity in backend.identities(list(Role)).items():
        if isinstance(identity, LoaderError):
            yield Finding(role.value, False, str(identity))
        else:
            yield _role(role, identity, backend, ready)
    for scope in sorted(target.scope_readers):
        reader = backend.reader(scope)
        if reader is None:
            yield Finding(f"scope {scope}", False, "no way to read as this scope's readers")
            continue
        seen = reader.identities([Role.READER]).get(Role.READER)
        if seen is None:
            continue  # a backend that looks as anyone, without credentials to check
        if isinstance(seen, LoaderError):
            yield Finding(f"scope {scope}", False, str(seen))
        else:
            yield _scope_reader(scope, seen, reader, ready)


def _shown(identity: Identity) -> str:
    scopes = " ".join(sorted(identity.scopes))
    sees = " ".join(sorted(identity.permissions)) or "nothing"
    return f"{identity.subject}, scopes {scopes}, sees {sees}"


def _role(role: Role, identity: Identity, backend: Backend, ready: bool) -> Finding:
    """A role's token as apply's preflight checks it; the reader's also as plan's refresh
    needs it (every dataset visible) and as the server takes it (one live read: no write
    can be tried without writing, so the admin's and updater's stop at their scopes)."""
    try:
        backend.preflight([role])
        if role is Role.READER:
            check_reader_sees_everything(identity)
            if ready:
                backend.read_entity(EntityKind.CATEGORY, PROBE_CATEGORY)
    except BackendError as error:
        text = error.text if error.call.startswith("preflight") else str(error)
        return Finding(role.value, False, f"{identity.subject}: {text}")
    except LoaderError as error:
        return Finding(role.value, False, f"{identity.subject}: {error}")
    return Finding(role.value, True, _shown(identity))


def _scope_reader(scope: str, identity: Identity, reader: Backend, ready: bool) -> Finding:
    """A scope's reader shows which grants still hold: it must be able to read, see what
    the scope is granted, and not see everything (then a removed grant never shows)."""
    name = f"scope {scope}"
    who = identity.subject
    if READ_FREE_DATA not in identity.scopes:
        held = ", ".join(sorted(identity.scopes)) or "none"
        text = f"its token lacks the '{READ_FREE_DATA}' scope every read needs (it has: {held})"
        return Finding(name, False, f"{who}: {text}")
    if SEES_EVERYTHING in identity.permissions:
        text = (
            f"its token has the admin permission, so it sees every dataset and a grant "
            f"removed from {scope} would never show: give this credential a token without "
            f"it that holds {scope}"
        )
        return Finding(name, False, f"{who}: {text}")
    if scope not in identity.permissions:
        seen = ", ".join(sorted(identity.permissions)) or "none"
        text = (
            f"its token cannot see what is granted to {scope} (its permissions: {seen}): "
            "every grant would look removed and every plan would grant it again; give this "
            f"credential a token with the {scope} permission"
        )
        return Finding(name, False, f"{who}: {text}")
    if ready:
        try:
            reader.read_entity(EntityKind.CATEGORY, PROBE_CATEGORY)
        except LoaderError as error:
            return Finding(name, False, f"{who}: {error}")
    return Finding(name, True, _shown(identity))


def _state(target: Target, location: str) -> Finding:
    """The state record as plan reads it, and a probe beside it written, locked, unlocked
    and removed as apply writes and locks the record."""
    unset = ", ".join(unset_variables(location))
    if unset:
        text = f"{location}: {unset} not set in the environment (the target's state needs it)"
        return Finding("state", False, text)
    # Each refusal in the words of the command that would refuse, and naming it.
    store = StateStore(location)
    try:
        document, record, pending = read_record(store)
    except LoaderError as error:
        return Finding("state", False, f"{error} (plan and apply refuse it too)")
    try:
        lock = store.current_lock()
    except LoaderError as error:
        return Finding("state", False, f"{error} (apply refuses it too)")
    if not is_targets_record(record, target, location):
        text = other_target_message(location, record.target_url, target.url)
        return Finding("state", False, f"{text} (plan and apply refuse it too)")
    if lock is not None and lock.unreadable:
        text = (
            f"{store.lock_storage.where}: not a lock ({lock.unreadable}); `flowkit-loader "
            "unlock` removes it if no run is taking it (apply refuses it too)"
        )
        return Finding("state", False, text)
    try:
        _probe(location)
    except (LoaderError, OSError) as error:
        text = f"{error}; apply could not write its record there: fix that, {WHERE_ELSE}"
        return Finding("state", False, text)
    if document.serial == 0:
        held = "no record yet (the first apply writes it)"
    else:
        held = (
            f"serial {document.serial}, {plural(len(record.datasets), 'dataset')}, "
            f"{plural(len(record.entities), 'config entity', 'config entities')}"
        )
    if pending.entries:
        entries = plural(len(pending.entries), "journal entry", "journal entries")
        held += f", {entries} of an interrupted apply (the next apply folds them in)"
    if lock is not None:
        held += f"; locked now, {lock.describe(store.clock)}"
    return Finding("state", True, f"{location}: {held}; writable and lockable")


def _probe(location: str) -> None:
    """Write a record beside `location`, read it back, take and release its lock, remove
    both: what apply does to the real record, through the same storage. Folders this
    made are removed again (apply makes them itself)."""
    probe = StateStore(location + PROBE_SUFFIX)
    made = _missing_folders(location)
    try:
        # A probe a killed check left behind would refuse the write or the lock.
        probe.record.delete()
        probe.lock_storage.delete()
        written = probe.write(Document.new(), {"probe": "flowkit-loader check"})
        if probe.read() != written:
            raise StateError(f"{probe.location}: what was read back is not what was written")
        lock = probe.acquire(StateStore.holder("check"), PROBE_LOCK_TTL)
        probe.release(lock)
        if probe.current_lock() is not None:
            raise StateError(f"{probe.lock_storage.where}: the lock stayed after its release")
        probe.record.delete()
    finally:
        # Best effort after a failure, which is what gets reported.
        with contextlib.suppress(LoaderError, OSError):
            probe.lock_storage.delete()
        with contextlib.suppress(LoaderError, OSError):
            probe.record.delete()
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_folders(location: str) -> list[Path]:
    """The folders of a local `location` that do not exist yet, deepest first."""
    if "://" in location and not location.startswith("file://"):
        return []
    folder = Path(location.removeprefix("file://")).absolute().parent
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@dataclass(frozen=True)
class Unlocked:
    """What `unlock` did: the state record's location, and the lock broken (None: there
    was none)."""

    location: str
    broken: Lock | None


def unlock(
    manifest: Manifest, target: str | None = None, *, state: str | None = None, force: bool = False
) -> Unlocked:
    """Break the state lock of a run that is gone; one that has not expired only with
    `force` (a StateError otherwise, saying whose it is)."""
    store = StateStore(state or manifest.target(target).state)
    return Unlocked(store.location, store.break_lock(force=force))
