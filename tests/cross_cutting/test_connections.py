"""Every connection error names its URL and its cause, for the backend and the token
endpoint alike: a closed loopback port (refused), loopback sockets that never accept
(timed out, connecting or waiting for the answer; timeouts kept short through the
client's settings) and a name under `.invalid`, which never resolves (RFC 2606).
Untrusted certificates are in test_tls.py."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.backends.auth import AuthError, TokenProvider
from loader.backends.remote import RemoteBackend, RequestSettings, UnknownOutcome
from loader.cli import cli
from loader.model import BackendError, Role
from tests.manifests import remote_manifest
from tests.serving import SECRET, SECRET_ENV, credential, remote_backend, serving

NO_NAME = (
    r"name flowkit\.invalid not resolved \((EAI_NONAME: unknown name\): check the host in "
    r"{where}|EAI_AGAIN: the resolver did not answer\))"
)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that listens and never accepts: connections complete in the
    kernel's backlog, requests are never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.fixture
def full_port() -> Iterator[int]:
    """A loopback port whose backlog is full: connecting itself times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def backend(base: str, **options: object) -> RemoteBackend:
    provider = TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: SECRET},
                             timeout=0.5)  # fmt: skip
    settings: dict[str, object] = {"timeout": 0.5, "retries": 1, "backoff": 0.01,
                                   "sleep": lambda s: None, **options}  # fmt: skip
    return remote_backend(f"{base}/v1", dict.fromkeys(Role, provider), **settings)


def failure(call: object) -> str:
    with pytest.raises((BackendError, AuthError)) as failed:
        call()  # type: ignore[operator]
    return str(failed.value)


def test_a_refused_connection(closed_port: int) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    remote = backend(base)
    assert failure(lambda: remote.wait_ready(0)) == (
        f"GET /heartbeat: not ready after 0 s: cannot connect to {base}/v1/heartbeat: "
        "connection refused"
    )
    assert failure(remote.read_setup) == (
        f"GET /setup: cannot connect to {base}/v1/setup: connection refused"
    )
    assert failure(lambda: remote.preflight([Role.ADMIN])) == (
        f"token request for client dev-admin: cannot connect to {base}/oauth/token: "
        "connection refused"
    )


def test_check_names_the_url_it_could_not_reach(closed_port: int, tmp_path: Path) -> None:
    """`check`'s layout is its own; the causes it shows are the client's, pinned here."""
    base = f"http://127.0.0.1:{closed_port}"
    manifest = remote_manifest(tmp_path, base, "dev-admin")
    result = CliRunner().invoke(cli, ["check", str(manifest), "--wait-ready", "0.2"],
                                env={SECRET_ENV: SECRET})  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.splitlines()
    heartbeat = (
        f"error: GET /heartbeat: not ready after 0.2 s: cannot connect to {base}/v1/heartbeat: "
        "connection refused"
    )
    token = (
        f"error: token request for client dev-admin: cannot connect to {base}/oauth/token: "
        "connection refused"
    )
    assert any(line.endswith(heartbeat) for line in lines), lines
    assert any(line.endswith(token) for line in lines), lines


def test_an_answer_that_never_comes(silent_port: int) -> None:
    base = f"http://127.0.0.1:{silent_port}"
    remote = backend(base)
    assert failure(lambda: remote.wait_ready(0)) == (
        f"GET /heartbeat: not ready after 0 s: no answer from {base}/v1/heartbeat: "
        "timed out after 0.5 s"
    )
    assert failure(remote.read_setup) == (
        f"GET /setup: no answer from {base}/v1/setup: timed out after 0.5 s"
    )
    assert failure(lambda: remote.preflight([Role.ADMIN])) == (
        f"token request for client dev-admin: no answer from {base}/oauth/token: "
        "timed out after 0.5 s"
    )


def test_a_write_whose_answer_never_comes_is_an_unknown_outcome(
    silent_port: int, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{silent_port}"
    with serving(tmp_path / "serve.db") as issuer:  # tokens from a real issuer
        provider = TokenProvider(credential(issuer, "dev-admin"), environ={SECRET_ENV: SECRET})
        remote = RemoteBackend(
            f"{base}/v1", {Role.UPDATER: provider}, settings=RequestSettings(timeout=0.5)
        )
        with pytest.raises(UnknownOutcome) as unknown:
            remote.request("POST", "/scope_mapping", Role.UPDATER, "write:data",
                           {"scope": "x", "mdid": 1}, write=True)  # fmt: skip
    assert str(unknown.value) == (
        f"POST /scope_mapping: no answer from {base}/v1/scope_mapping: timed out after 0.5 s"
    )


def test_a_connection_that_cannot_be_made_in_time(full_port: int) -> None:
    base = f"http://127.0.0.1:{full_port}"
    assert failure(backend(base).read_setup) == (
        f"GET /setup: cannot connect to {base}/v1/setup: timed out after 0.5 s"
    )


def test_a_name_that_does_not_resolve() -> None:
    base = "https://flowkit.invalid"
    remote = backend(base)
    message = failure(lambda: remote.wait_ready(0))
    shape = (
        r"GET /heartbeat: not ready after 0 s: cannot connect to https://flowkit\.invalid"
        r"/v1/heartbeat: " + NO_NAME.format(where="the target's url")
    )
    assert re.fullmatch(shape, message), message
    message = failure(lambda: remote.preflight([Role.ADMIN]))
    shape = (
        r"token request for client dev-admin: cannot connect to https://flowkit\.invalid"
        r"/oauth/token: " + NO_NAME.format(where=r"the target's auth\.token_url")
    )
    assert re.fullmatch(shape, message), message
