"""`flowkit-loader check`: every credential and the state store, tested the way plan and
apply will use them, one finding per thing checked.

What plan and apply require is asked of the same code where it exists (a role's scopes
through `RemoteBackend.preflight`, the reader's view through the session's own test, the
record through `session.read_record`), so that check passes exactly when they would.
Nothing here prints; the CLI renders the findings.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loader.backends.auth import Token, TokenProvider
from loader.backends.factory import open_backend, open_readers
from loader.model import (
    Backend,
    BackendError,
    EntityKind,
    LoaderError,
    Manifest,
    Role,
    SetupConfig,
    Target,
    excerpt,
)
from loader.session import SCOPES_OF, check_reader_sees_everything, read_record, recorded_url
from loader.state import Document, StateError, StateStore

if TYPE_CHECKING:
    from loader.backends.remote import RemoteBackend

READ = "read:free_data"  # the scope every read (/query, config entities) needs
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
    setup = manifest.setup(chosen.name)
    if chosen.is_local:
        yield _local(chosen, setup)
    else:
        unset = _unset(chosen.url)
        if unset:
            needs = f"{unset} not set in the environment (its url needs it)"
            yield Finding(chosen.name, False, needs, nested=False)
        else:
            try:
                backend = open_backend(chosen, setup, environ=environ)
            except LoaderError as error:
                yield Finding(chosen.name, False, str(error), nested=False)
            else:
                try:
                    yield from _remote(chosen, backend, wait_ready, environ)
                finally:
                    _close(backend)
    yield _state(chosen, state or chosen.state)


def _unset(text: str) -> str:
    """The `${VAR}`s left in `text` because the environment does not set them."""
    return ", ".join(sorted(set(re.findall(r"\$\{(\w+)", text))))


def _close(backend: Backend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _local(target: Target, setup: SetupConfig) -> Finding:
    name, path = target.name, target.local_path
    if not Path(path).exists():
        # Opening it would create it: check leaves that to apply.
        text = f"embedded backend at {path}: no database yet (the first apply creates it)"
        return Finding(name, True, text, nested=False)
    try:
        backend = open_backend(target, setup, read_only=True)
        try:
            view = backend.read_setup()
        finally:
            _close(backend)
    except LoaderError as error:
        return Finding(name, False, str(error), nested=False)
    return Finding(
        name,
        True,
        f"embedded backend at {path}: {_plural(len(view.languages), 'language')}, "
        f"{_plural(len(view.data_providers), 'data provider')}",
        nested=False,
    )


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def _remote(
    target: Target, backend: Backend, wait_ready: float, environ: Mapping[str, str] | None
) -> Iterator[Finding]:
    from loader.backends.remote import RemoteBackend

    assert isinstance(backend, RemoteBackend)  # open_backend's, for an http(s) target
    try:
        backend.wait_ready(wait_ready)
    except LoaderError as error:
        ready = False
        yield Finding(target.name, False, str(error), nested=False)
    else:
        ready = True
        yield Finding(target.name, True, f"{target.url} is ready", nested=False)
    # One credential for several roles is one provider: its token is asked for once,
    # and a token request that failed is not sent again for the next role.
    tokens: dict[int, Token | LoaderError] = {}

    def token_of(provider: TokenProvider) -> Token | LoaderError:
        if id(provider) not in tokens:
            try:
                tokens[id(provider)] = provider.current()
            except LoaderError as error:
                tokens[id(provider)] = error
        return tokens[id(provider)]

    for role in Role:
        provider = backend.tokens.get(role)
        if provider is None:
            continue  # validation requires admin and updater; reader defaults to admin's
        token = token_of(provider)
        if isinstance(token, LoaderError):
            yield Finding(role.value, False, str(token))
            continue
        yield _role(role, token, backend, ready)
    if target.scope_readers:
        readers = open_readers(target, backend, target.scope_readers, environ=environ)
        for scope, reader in readers.items():
            assert isinstance(reader, RemoteBackend)  # open_readers', for a remote target
            try:
                token = token_of(reader.tokens[Role.READER])
                if isinstance(token, LoaderError):
                    yield Finding(f"scope {scope}", False, str(token))
                    continue
                yield _scope_reader(scope, token, reader, ready)
            finally:
                _close(reader)


def _shown(token: Token) -> str:
    scopes = " ".join(sorted(token.scopes))
    sees = " ".join(sorted(token.permissions)) or "nothing"
    return f"{token.subject}, scopes {scopes}, sees {sees}"


def _role(role: Role, token: Token, backend: RemoteBackend, ready: bool) -> Finding:
    """A role's token as apply's preflight checks it; the reader's also as plan's refresh
    needs it (every dataset visible) and as the server takes it (one live read: no write
    can be tried without writing, so the admin's and updater's stop at their scopes)."""
    try:
        backend.preflight({role: SCOPES_OF[role]})
        if role is Role.READER:
            check_reader_sees_everything(backend)
            if ready:
                backend.read_entity(EntityKind.CATEGORY, PROBE_CATEGORY)
    except BackendError as error:
        text = error.text if error.call.startswith("preflight") else str(error)
        return Finding(role.value, False, f"{token.subject}: {text}")
    except LoaderError as error:
        return Finding(role.value, False, f"{token.subject}: {error}")
    return Finding(role.value, True, _shown(token))


def _scope_reader(scope: str, token: Token, reader: RemoteBackend, ready: bool) -> Finding:
    """A scope's reader shows which grants still hold: it must be able to read, see what
    the scope is granted, and not see everything (then a removed grant never shows)."""
    name = f"scope {scope}"
    who = token.subject
    if READ not in token.scopes:
        held = ", ".join(sorted(token.scopes)) or "none"
        text = f"its token lacks the '{READ}' scope every read needs (it has: {held})"
        return Finding(name, False, f"{who}: {text}")
    if "admin" in token.permissions:
        text = (
            f"its token has the admin permission, so it sees every dataset and a grant "
            f"removed from {scope} would never show: give this credential a token without "
            f"it that holds {scope}"
        )
        return Finding(name, False, f"{who}: {text}")
    if scope not in token.permissions:
        seen = ", ".join(sorted(token.permissions)) or "none"
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
    return Finding(name, True, _shown(token))


def _state(target: Target, location: str) -> Finding:
    """The state record as plan reads it, and a probe beside it written, locked, unlocked
    and removed as apply writes and locks the record."""
    unset = _unset(location)
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
    if record.target_url not in (None, target.url, recorded_url(target, location)):
        text = (  # as session.open_run words it
            f"{location}: this state record was applied to {excerpt(record.target_url)}, not "
            f"{target.url}: give each target its own state (if it is the same backend at a "
            "new address, set target_url in the record) (plan and apply refuse it too)"
        )
        return Finding("state", False, text)
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
            f"serial {document.serial}, {_plural(len(record.datasets), 'dataset')}, "
            f"{_plural(len(record.entities), 'config entity', 'config entities')}"
        )
    if pending.entries:
        entries = _plural(len(pending.entries), "journal entry", "journal entries")
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
