"""Connections' trust and failures (loader/backends/transport.py): tls_context's refusal
of a bundle it cannot read, and describe()/is_permanent() on real connection errors to
loopback sockets (refused, closed without an answer, timed out, not TLS) and on each
cause the TLS library or the resolver gives. Whole requests through the remote client are
in tests/cross_cutting/test_connections.py and tests/cross_cutting/test_tls.py."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loader.backends.transport import describe, is_permanent, tls_context, tls_context_for
from loader.model import LoaderError

URL = "https://flowkit.invalid/v1/setup"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(10)
        yield server


def failure(url: str, **options: object) -> httpx.TransportError:
    with pytest.raises(httpx.TransportError) as failed:
        httpx.get(url, **options)  # type: ignore[arg-type]
    return failed.value


def answer_once(server: socket.socket, reply: bytes) -> threading.Thread:
    """Accept one connection, read what comes, send `reply` and close."""

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def caused_by(cause: BaseException) -> httpx.TransportError:
    """A connection error as httpx raises it: wrapping the error that caused it."""
    wrapper = httpx.ConnectError("wrapped")
    wrapper.__cause__ = cause
    return wrapper


@pytest.mark.parametrize("bundle", ["missing.pem", "."])
def test_a_bundle_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path, bundle: str) -> None:
    path = tmp_path / bundle
    with pytest.raises(LoaderError) as refused:
        tls_context(str(path))
    reason = "No such file or directory" if bundle == "missing.pem" else "Is a directory"
    assert str(refused.value) == (
        f"ca_bundle {path} cannot be read as PEM certificates ({reason}): set ca_bundle in "
        "the target to a PEM file of the private CA's certificate"
    )


def test_without_a_bundle_certificates_and_host_names_are_verified() -> None:
    context = tls_context(None)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert tls_context("").cert_store_stats() == context.cert_store_stats()  # "" adds nothing


def test_a_plain_http_client_loads_no_roots_and_still_verifies_whatever_it_meets() -> None:
    plain = tls_context_for("HTTP://127.0.0.1:8000/v1", None)
    assert plain.cert_store_stats()["x509_ca"] == 0  # never used: nothing to load
    assert (plain.verify_mode, plain.check_hostname) == (ssl.CERT_REQUIRED, True)
    public = tls_context(None).cert_store_stats()
    assert tls_context_for("https://flowkit.example/v1", None).cert_store_stats() == public
    assert tls_context_for("http://127.0.0.1:8000/v1", "").cert_store_stats()["x509_ca"] == 0


def test_a_plain_http_client_given_a_bundle_still_checks_it(tmp_path: Path) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    with pytest.raises(LoaderError, match="cannot be read as PEM certificates"):
        tls_context_for("http://127.0.0.1:8000/v1", str(broken))


def test_a_refused_connection_names_the_url_without_its_password(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1/setup"
    error = failure(f"http://admin:s3cret@127.0.0.1:{closed_port}/v1/setup")
    assert describe(error, f"http://admin:s3cret@127.0.0.1:{closed_port}/v1/setup") == (
        f"cannot connect to {url}: connection refused"
    )
    assert not is_permanent(error)


def test_a_connection_closed_before_the_answer(listener: socket.socket) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/setup"
    served = answer_once(listener, b"")
    error = failure(url, timeout=10)
    served.join(timeout=10)
    assert describe(error, url) == (
        f"no answer from {url}: the connection closed (Server disconnected without sending "
        "a response.)"
    )
    assert not is_permanent(error)


def test_a_server_that_does_not_speak_tls_is_a_permanent_failure(listener: socket.socket) -> None:
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/v1/setup"
    served = answer_once(listener, b"HTTP/1.1 400 Bad Request\r\n\r\n")
    error = failure(url, timeout=10)
    served.join(timeout=10)
    assert re.fullmatch(rf"cannot connect to {re.escape(url)}: TLS failed \([A-Z_]+\)",
                        describe(error, url)), describe(error, url)  # fmt: skip
    assert is_permanent(error)


def test_a_timeout_names_its_phase_and_its_seconds(listener: socket.socket) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/setup"  # never accepted
    timed_out = failure(url, timeout=0.25)
    assert describe(timed_out, url) == f"no answer from {url}: timed out after 0.25 s"
    # Raised outside a request, a timeout has no seconds to name.
    assert [describe(kind("t"), URL) for kind in (httpx.ConnectTimeout, httpx.WriteTimeout,
                                                  httpx.PoolTimeout, httpx.ReadTimeout)] == [
        f"cannot connect to {URL}: timed out", f"cannot send to {URL}: timed out",
        f"no free connection to {URL}: timed out", f"no answer from {URL}: timed out",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "bundle", "expected"),
    [
        (20, None, "certificate not trusted (local issuer): set ca_bundle in the target to "
                   "the CA that signed it"),
        (19, "/ca.pem", "certificate not trusted (local issuer): add the CA that signed it to "
                        "/ca.pem"),
        (10, "/ca.pem", "certificate not valid (local issuer)"),  # expired: no bundle helps
    ],
)  # fmt: skip
def test_an_unverified_certificate_says_what_would_fix_it(
    code: int, bundle: str | None, expected: str
) -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_code, cause.verify_message = code, "local issuer"
    error = caused_by(cause)
    assert describe(error, URL, ca_bundle=bundle) == f"cannot connect to {URL}: {expected}"
    assert is_permanent(error)


@pytest.mark.parametrize(
    ("errno", "expected"),
    [
        (socket.EAI_NONAME, "(EAI_NONAME: unknown name): check the host in the target's "
                            "auth.token_url"),
        (socket.EAI_AGAIN, "(EAI_AGAIN: the resolver did not answer)"),
        (socket.EAI_FAIL, "(resolver broke)"),
    ],
)  # fmt: skip
def test_a_name_not_resolved_names_the_host_and_where_to_fix_it(errno: int, expected: str) -> None:
    error = caused_by(socket.gaierror(errno, "resolver broke"))
    assert describe(error, URL, where="the target's auth.token_url") == (
        f"cannot connect to {URL}: name flowkit.invalid not resolved {expected}"
    )


def test_other_causes_and_errors_are_each_one_line() -> None:
    assert describe(caused_by(ConnectionResetError()), URL) == (
        f"no answer from {URL}: connection reset"
    )
    assert describe(httpx.ConnectError("gone"), URL) == f"cannot connect to {URL}: gone"
    # Without a message, the error's kind: never a line that ends in ': '.
    assert describe(httpx.ConnectError(""), URL) == f"cannot connect to {URL}: ConnectError"
    assert describe(httpx.ReadError("eof"), URL) == f"no answer from {URL}: ReadError (eof)"
    looped = httpx.ReadError("a")
    looped.__cause__ = OSError("b")
    looped.__cause__.__cause__ = looped  # a cycle of causes still ends
    assert describe(looped, URL) == f"no answer from {URL}: ReadError (a)"
    assert not is_permanent(looped)
