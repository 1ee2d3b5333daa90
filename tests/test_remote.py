"""The remote client's service checks: readiness, API version, scopes before writes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from loader.backends.remote import RemoteBackend, RequestSettings
from loader.model import BackendError, Role, ScopeError
from tests.serving import remote, serving


def test_wait_ready_then_version_check(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db") as base:
        remote(base, {Role.ADMIN: "dev-admin"}).wait_ready(deadline=10)


def test_wait_ready_gives_up_at_the_deadline() -> None:
    waited: list[float] = []
    backend = RemoteBackend(
        "http://127.0.0.1:9/v1",  # the discard port: nothing answers there
        {},
        settings=RequestSettings(
            sleep=waited.append,
            transport=httpx.MockTransport(lambda r: httpx.Response(503, text="starting")),
        ),
    )
    with pytest.raises(BackendError, match=r"^GET /heartbeat: not ready after 0 s: 503 starting$"):
        backend.wait_ready(deadline=0)


def test_an_unknown_api_version_is_refused_clearly() -> None:
    answer = {"datetime": "x", "python_version": "3.11", "config": {"api_version": "2.0.0"}}
    backend = RemoteBackend(
        "https://backend.example.org/v1",
        {},
        settings=RequestSettings(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
        ),
    )
    with pytest.raises(BackendError, match=r"API version 2\.0\.0 is not one this loader knows"):
        backend.wait_ready(deadline=1)


def test_a_missing_scope_fails_before_any_write(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db") as base:
        backend = remote(base, {Role.ADMIN: "dev-updater", Role.UPDATER: "dev-updater"})
        backend.preflight([Role.UPDATER])
        with pytest.raises(ScopeError, match="the admin credential's token lacks the 'admin'"):
            backend.preflight([Role.UPDATER, Role.ADMIN])
