"""A manifest target -> the Backend that serves it: the embedded one for `local:PATH`,
the remote client (with a token provider per credential) for `http(s)://host/v1`.

The remote client and its libraries are imported only when a remote target is opened.
"""

from __future__ import annotations

from collections.abc import Mapping

from loader.backends.local import LocalBackend
from loader.model import Backend, Credential, SetupConfig, Target


def open_backend(
    target: Target,
    setup: SetupConfig,
    *,
    environ: Mapping[str, str] | None = None,
    parallelism: int = 8,
) -> Backend:
    if target.is_local:
        return LocalBackend(target.local_path)
    from loader.backends.auth import TokenProvider
    from loader.backends.remote import RemoteBackend

    # One credential for several roles is one provider: one token, obtained once.
    providers: dict[Credential, TokenProvider] = {}
    tokens = {
        role: providers.setdefault(credential, TokenProvider(credential, environ=environ))
        for role, credential in target.credentials.items()
    }
    return RemoteBackend(
        target.url,
        tokens,
        date_formats={r.trid: r.date_format for r in setup.temporal.values()},
        ca_bundle=target.ca_bundle,
        parallelism=parallelism,
    )
