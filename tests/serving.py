"""Start `flowkit-loader serve` on loopback for a test, and clients for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from loader.backends.auth import TokenProvider
from loader.backends.remote import RemoteBackend
from loader.model import Credential, Role
from tests.conftest import ROOT

SECRET_ENV = "FLOWKIT_SERVE_SECRET"
SECRET = "test-serve-secret-0b7c"
AUDIENCE = "https://flowkit-ui-backend.local"


@contextmanager
def serving(db: Path, *extra: str) -> Iterator[str]:
    """A running server on a free loopback port; yields its base URL (without /v1)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "loader", "serve", "--db", str(db), "--port", "0", *extra],
        cwd=ROOT,
        env={**os.environ, SECRET_ENV: SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", line)
            if match:
                yield match.group(1)
                return
        raise AssertionError(f"serve did not start: {lines}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


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
    return RemoteBackend(f"{base}/v1", tokens, **options)  # type: ignore[arg-type]


@contextmanager
def counting_proxy(
    upstream: str, closed: list[Callable[[], None]] | None = None
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A loopback HTTP proxy in front of `upstream` that notes each request's method and
    path: how tests count what a command sent (tokens included, under /oauth). Calling
    what it appends to `closed` shuts its port: from then on connections are refused."""
    import http.server
    import threading

    import httpx

    seen: list[tuple[str, str]] = []
    client = httpx.Client(base_url=upstream, timeout=120)
    shut = threading.Event()

    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if shut.is_set():  # closed: kept-alive connections drop without an answer
                self.close_connection = True
                return
            seen.append((self.command, self.path))
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "content-length", "connection")}  # fmt: skip
            answer = client.request(self.command, self.path, content=body, headers=headers)
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                        "content-encoding"):  # fmt: skip
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PATCH = do_DELETE = forward

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def close() -> None:
        if not shut.is_set():
            shut.set()
            server.shutdown()
            server.server_close()

    if closed is not None:
        closed.append(close)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        close()
        client.close()
