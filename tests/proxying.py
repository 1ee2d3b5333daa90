"""A loopback proxy in front of `flowkit-loader serve`: how tests count what a command
sent (each request's method and path, a token request with its client), cut the network
(`close`: from then on connections are refused), switch to
another server at once (an issuer that rotated its signing key, a backend restarted with
a new one, without a gap in which connections are refused) and can speak TLS with a
private CA's certificate."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}


@dataclass
class Proxy:
    """What the proxy forwarded, and where to."""

    upstream: str
    url: str = ""
    seen: list[tuple[str, str]] = field(default_factory=list)
    token_clients: list[str] = field(default_factory=list)  # one per token request
    refused: list[str] = field(default_factory=list)  # the subject of each 401's token
    # With a gate of N, the first 401s are held until N of them are waiting (or 10 s
    # passed), then all answered at once: N refusals in flight together, however the
    # threads of the client happen to be scheduled.
    refusal_gate: int = 0
    gate_open: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    shut: threading.Event = field(default_factory=threading.Event)
    # With a hold of (method, path, n), the n-th such request and every request after it
    # wait (holding is set) until release is set (or 60 s passed) before they are
    # forwarded: a client stopped at a known request.
    hold: tuple[str, str, int] | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    close: Callable[[], None] = lambda: None  # the network goes away: the port is shut

    def switch(self, upstream: str) -> None:
        """From the next request on, forward to `upstream`."""
        with self.lock:
            self.upstream = upstream

    def tokens(self) -> dict[str, int]:
        """Token requests per client."""
        with self.lock:
            return dict(Counter(self.token_clients))

    def refusals(self) -> dict[str, int]:
        """401 answers per token subject."""
        with self.lock:
            return dict(Counter(self.refused))


@contextmanager
def proxy(upstream: str, tls: ssl.SSLContext | None = None) -> Iterator[Proxy]:
    """A running proxy on a free loopback port (https when `tls` is given)."""
    state = Proxy(upstream)
    client = httpx.Client(timeout=120)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if state.shut.is_set():  # closed: kept-alive connections drop without an answer
                self.close_connection = True
                return
            with state.lock:
                state.seen.append((self.command, self.path))
                if self.path == "/oauth/token":
                    state.token_clients.append(str(json.loads(body).get("client_id")))
                target = state.upstream
                if state.hold is not None and state.seen.count(state.hold[:2]) == state.hold[2]:
                    state.holding.set()
                held = state.holding.is_set() and not state.release.is_set()
            if held:  # the held request and every one after it, until released
                state.release.wait(timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if self.headers.get("Content-Encoding"):
                headers["Content-Encoding"] = self.headers["Content-Encoding"]
            answer = client.request(self.command, target + self.path, content=body,
                                    headers=headers)  # fmt: skip
            if answer.status_code == 401:
                with state.lock:
                    state.refused.append(_subject(self.headers.get("Authorization", "")))
                    if len(state.refused) >= state.refusal_gate:
                        state.gate_open.set()
                state.gate_open.wait(timeout=10)
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PATCH = do_DELETE = forward

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"

    def close() -> None:
        if not state.shut.is_set():
            state.shut.set()
            server.shutdown()
            server.server_close()

    state.close = close
    try:
        yield state
    finally:
        close()
        client.close()


def _subject(authorization: str) -> str:
    """The `sub` of a bearer token, read without checking it (the server checks)."""
    try:
        payload = authorization.removeprefix("Bearer ").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError, TypeError):
        return "none"


def certificate(
    subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name | None, signer: rsa.RSAPrivateKey,
    ca: bool,
) -> x509.Certificate:  # fmt: skip
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def private_ca(directory: Path, name: str = "ca.pem") -> tuple[Path, ssl.SSLContext]:
    """A private CA (its certificate written to `directory/name`) and a server context
    with a certificate for 127.0.0.1 that it signed."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = certificate(f"test CA {name}", ca_key, None, ca_key, ca=True)  # names differ
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = certificate("127.0.0.1", key, ca.subject, ca_key, ca=False)
    (directory / name).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = directory / f"server-{name}"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return directory / name, context
