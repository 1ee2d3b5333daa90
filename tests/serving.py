"""Start `flowkit-loader serve` on loopback for a test, and clients for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from loader.backends.auth import TokenProvider
from loader.backends.remote import RemoteBackend, RequestSettings
from loader.model import Credential, Role
from tests.conftest import ROOT

SECRET_ENV = "FLOWKIT_SERVE_SECRET"
SECRET = "test-serve-secret-0b7c"
AUDIENCE = "https://flowkit-ui-backend.local"


@contextmanager
def started(
    db: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """A running server on a free loopback port (with the test secret unless `env` is
    given): its process, its base URL (without /v1) and the lines it announced."""
    process = subprocess.Popen(
        [sys.executable, "-m", "loader", "serve", "--db", str(db), "--port", "0", *extra],
        cwd=ROOT, env=env if env is not None else {**os.environ, SECRET_ENV: SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("development clients" in x for x in lines):
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", "\n".join(lines))
        assert match, f"serve did not start: {lines}"
        yield process, match.group(1), lines
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@contextmanager
def serving(db: Path, *extra: str) -> Iterator[str]:
    """A running server on a free loopback port; yields its base URL (without /v1)."""
    with started(db, *extra) as (_, base, _lines):
        yield base


def credential(base: str, client: str) -> Credential:
    return Credential(
        "client_credentials",
        SECRET_ENV,
        client_id=client,
        token_url=f"{base}/oauth/token",
        audience=AUDIENCE,
    )


def remote(base: str, clients: dict[Role, str], **options: object) -> RemoteBackend:
    """A RemoteBackend whose roles use the given development clients."""
    environ = {SECRET_ENV: SECRET}
    tokens = {
        role: TokenProvider(credential(base, client), environ=environ)
        for role, client in clients.items()
    }
    return remote_backend(f"{base}/v1", tokens, **options)


def remote_backend(url: str, tokens: dict[Role, TokenProvider], **options: object) -> RemoteBackend:
    """A RemoteBackend given its options by name, whether they are the backend's own
    (date_formats, scope_tokens) or how it sends (RequestSettings)."""
    sending = {f.name for f in fields(RequestSettings)}
    settings = RequestSettings(**{k: v for k, v in options.items() if k in sending})  # type: ignore[arg-type]
    own = {k: v for k, v in options.items() if k not in sending}
    return RemoteBackend(url, tokens, settings=settings, **own)  # type: ignore[arg-type]


def notebook_fills(base: str) -> None:
    """The notebook's own flow (bench/notebook_flow.py), as a user ran it."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "notebook_flow.py"), "--base-url", f"{base}/v1"],
        env={**os.environ, "NOTEBOOK_CLIENT_SECRET": SECRET},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
