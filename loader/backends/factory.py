"""A manifest target -> the Backend that serves it, chosen by its URL's scheme from one
table: the embedded backend for `local:PATH`, the remote client (with a token provider per
credential) for `http(s)://host/v1`, and whatever kind `register` adds (a plugin, a test).

This is the one place that knows which kinds exist: everything else holds a `Backend`
and uses its protocol (model.py), whatever kind it is. Each kind's module is imported only
when a target of that kind is opened (the remote client's libraries are heavy).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loader.backends.pacing import AdaptiveLimit
from loader.model import Backend, Credential, LoaderError, SetupConfig, Target


@dataclass(frozen=True)
class Opening:
    """How a command opens its target: the environment that holds the credentials'
    secrets, the requests it may have in flight (and the adaptive limit under them, with
    `--parallelism auto`), and whether it only reads (a backend that does not exist yet
    is then not created: it reads as an empty service)."""

    environ: Mapping[str, str] | None = None
    parallelism: int = 8  # requests in flight at most (the remote client's pool)
    pacing: AdaptiveLimit | None = None
    read_only: bool = False


@dataclass(frozen=True)
class BackendKind:
    """The targets of one URL scheme: how one is opened, what a manifest must give it,
    and what keeps two applies from writing it at once."""

    form: str  # how a URL of this kind is written, for messages: "local:PATH"
    pattern: str  # what a URL of this kind matches (in full)
    open: Callable[[Target, SetupConfig, Opening], Backend]
    needs_credentials: bool = True  # admin and updater roles, in the manifest
    # One writer at a time, for the length of an apply (holder named in refusals); by
    # default nothing: a server guards its own data.
    writer_lock: Callable[[Target, str | None], contextlib.AbstractContextManager[None]] = (
        lambda target, holder: contextlib.nullcontext()
    )


def _open_local(target: Target, setup: SetupConfig, opening: Opening) -> Backend:
    from loader.backends.local import AbsentBackend, LocalBackend

    check_local_database(target.local_path)
    if opening.read_only and not Path(target.local_path).exists():
        return AbsentBackend(target.local_path)
    return LocalBackend(target.local_path)


def _local_writer_lock(
    target: Target, holder: str | None
) -> contextlib.AbstractContextManager[None]:
    from loader.backends.local import apply_lock

    return apply_lock(target.local_path, holder)


def _open_remote(target: Target, setup: SetupConfig, opening: Opening) -> Backend:
    from loader.backends.auth import TokenProvider
    from loader.backends.remote import RemoteBackend, RequestSettings

    # One credential for several roles is one provider: one token, obtained once.
    providers: dict[Credential, TokenProvider] = {}

    def provider(credential: Credential) -> TokenProvider:
        return providers.setdefault(credential, TokenProvider(
            credential, environ=opening.environ, ca_bundle=target.ca_bundle))  # fmt: skip

    return RemoteBackend(
        target.url,
        {role: provider(credential) for role, credential in target.credentials.items()},
        scope_tokens={s: provider(c) for s, c in target.scope_readers.items()},
        date_formats={r.trid: r.date_format for r in setup.temporal.values()},
        settings=RequestSettings(
            ca_bundle=target.ca_bundle, parallelism=opening.parallelism, pacing=opening.pacing
        ),
    )


_REMOTE = BackendKind("http(s)://host/v1", r"https?://[^/\s]+(/\S*)?", _open_remote)
KINDS: dict[str, BackendKind] = {
    "local": BackendKind("local:PATH", "local:.+", _open_local, needs_credentials=False,
                         writer_lock=_local_writer_lock),
    "http": _REMOTE,
    "https": _REMOTE,
}  # fmt: skip


def register(scheme: str, kind: BackendKind) -> None:
    """Serve `scheme:` targets with `kind` (a manifest may then name them)."""
    KINDS[scheme] = kind


def scheme_of(url: str) -> str:
    return url.partition(":")[0].lower() if ":" in url else ""


def kind_of(url: str) -> BackendKind | None:
    """The kind that serves `url`, or None when no kind takes a URL written so."""
    kind = KINDS.get(scheme_of(url))
    return kind if kind is not None and re.fullmatch(kind.pattern, url) else None


def url_forms() -> str:
    """The URLs a target may have, for messages: `local:PATH or http(s)://host/v1`."""
    return " or ".join(dict.fromkeys(kind.form for kind in KINDS.values()))


def _kind(target: Target) -> BackendKind:
    kind = kind_of(target.url)
    if kind is None:  # validation refuses such a manifest; an API caller may not have
        raise LoaderError(f"target {target.name}: its url must be {url_forms()}")
    return kind


def open_backend(target: Target, setup: SetupConfig, opening: Opening = Opening()) -> Backend:
    """The target's backend, to be used as `with open_backend(...) as backend:`."""
    return _kind(target).open(target, setup, opening)


def writer_lock(
    target: Target, holder: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """What an apply holds, from before it opens its target until it ends, so that no
    other apply writes the same backend meanwhile (see local.apply_lock)."""
    return _kind(target).writer_lock(target, holder)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_local_database(path: str) -> None:
    """A `local:` target must be a SQLite file or nothing yet (a new, empty backend)."""
    where = Path(path)
    if where.is_dir():
        raise LoaderError(f"local:{path}: a directory, not a database file")
    if where.is_file() and where.stat().st_size > 0:
        with open(where, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise LoaderError(f"local:{path}: not a SQLite database")
