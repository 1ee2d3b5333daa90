"""A manifest target -> the Backend that serves it: the embedded one for `local:PATH`,
the remote client (with a token provider per credential) for `http(s)://host/v1`.

The remote client and its libraries are imported only when a remote target is opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from loader.backends.local import AbsentBackend, LocalBackend
from loader.backends.store import Principal
from loader.model import Backend, Credential, LoaderError, Role, SetupConfig, Target


def open_backend(
    target: Target,
    setup: SetupConfig,
    *,
    environ: Mapping[str, str] | None = None,
    parallelism: int = 8,
    read_only: bool = False,
) -> Backend:
    """The target's backend; with `read_only`, an embedded database that does not exist
    yet is not created (it reads as an empty service)."""
    if target.is_local:
        check_local_database(target.local_path)
        if read_only and not Path(target.local_path).exists():
            return AbsentBackend(target.local_path)
        return LocalBackend(target.local_path)
    from loader.backends.auth import TokenProvider
    from loader.backends.remote import RemoteBackend

    # One credential for several roles is one provider: one token, obtained once.
    providers: dict[Credential, TokenProvider] = {}
    tokens = {
        role: providers.setdefault(
            credential, TokenProvider(credential, environ=environ, ca_bundle=target.ca_bundle)
        )
        for role, credential in target.credentials.items()
    }
    return RemoteBackend(
        target.url,
        tokens,
        date_formats={r.trid: r.date_format for r in setup.temporal.values()},
        ca_bundle=target.ca_bundle,
        parallelism=parallelism,
    )


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


def open_readers(
    target: Target,
    backend: Backend,
    scopes: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Backend]:
    """A backend per scope as that scope's readers see it, to check grants (which the
    server cannot list): the embedded backend can look as anyone; a remote target needs
    a reader credential per scope (`credentials.scopes`)."""
    if isinstance(backend, AbsentBackend):
        return dict.fromkeys(sorted(scopes), backend)
    if isinstance(backend, LocalBackend):
        return {
            scope: backend.as_principal(
                Principal(frozenset({"read:free_data"}), frozenset({scope}), f"reader:{scope}")
            )
            for scope in sorted(scopes)
        }
    from loader.backends.auth import TokenProvider
    from loader.backends.remote import RemoteBackend

    assert isinstance(backend, RemoteBackend)
    return {
        scope: RemoteBackend(
            target.url,
            {Role.READER: TokenProvider(credential, environ=environ, ca_bundle=target.ca_bundle)},
            date_formats=backend.date_formats,
            ca_bundle=target.ca_bundle,
        )
        for scope, credential in sorted(target.scope_readers.items())
        if scope in set(scopes)
    }
