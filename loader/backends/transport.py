"""What the remote client and its token providers share about connections: the TLS roots
they trust and a one-line account of a connection that failed.

- Trust: the public roots (httpx's: `$SSL_CERT_FILE` or `$SSL_CERT_DIR` when set, else
  certifi's), plus the private CA of a target's `ca_bundle`. Adding, never replacing: a
  backend behind a private CA may still take its tokens from a hosted issuer (Auth0)
  whose certificate only a public root vouches for.
- Failures: every connection error names the URL and its cause (refused, name not
  resolved, certificate not trusted with the reason from the TLS library, timed out
  after how long, closed before the answer) and, where there is one thing to do, says it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import httpx

from loader.model import LoaderError

# OpenSSL's verify codes for "no trusted root vouches for this chain": a private CA that
# is not in the bundle. Others (expired, wrong host name) are not fixed by a bundle.
UNTRUSTED_ISSUER = {
    2,  # unable to get issuer certificate
    18,  # self-signed certificate
    19,  # self-signed certificate in certificate chain
    20,  # unable to get local issuer certificate
    21,  # unable to verify the first certificate
}
TRANSIENT_LOOKUP = {socket.EAI_AGAIN}
UNKNOWN_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The roots a connection trusts: the public ones, plus `ca_bundle`'s CA if given."""
    # httpx's own default (certifi, or $SSL_CERT_FILE / $SSL_CERT_DIR): a target with a
    # bundle trusts everything a target without one trusts, and its private CA as well.
    context = httpx.create_ssl_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (ssl.SSLError, OSError) as error:
            reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
            raise LoaderError(
                f"ca_bundle {ca_bundle} cannot be read as PEM certificates ({reason}): set "
                "ca_bundle in the target to a PEM file of the private CA's certificate"
            ) from None
    return context


def tls_context_for(url: str, ca_bundle: str | None) -> ssl.SSLContext:
    """The trust of a client that only ever calls `url` (no redirects are followed): for
    plain `http://` without a bundle, a context that trusts nothing, since it is never
    used (loading the public roots costs a no-change plan a tenth of its time); else
    `tls_context`."""
    if url.lower().startswith("http://") and not ca_bundle:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifying, with no root: fails shut
    return tls_context(ca_bundle)


def is_permanent(error: httpx.TransportError) -> bool:
    """Whether trying again cannot help: a TLS failure (an untrusted or invalid certificate,
    a server that does not speak TLS) stays as it is until someone changes something."""
    return any(isinstance(cause, ssl.SSLError) for cause in _causes(error))


def describe(
    error: httpx.TransportError,
    url: str,
    *,
    ca_bundle: str | None = None,
    where: str = "the target's url",
) -> str:
    """`error` on `url` in one line: what failed, where, why, and what to do if one thing
    would fix it. `where` names the target setting the URL came from ("the target's
    url", "the target's auth.token_url"), for when the fix is to correct it."""
    shown = _shown(url)
    if isinstance(error, httpx.TimeoutException):
        return _timed_out(error, shown)
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"cannot connect to {shown}: {_untrusted(cause, ca_bundle)}"
        if isinstance(cause, ssl.SSLError):
            return f"cannot connect to {shown}: TLS failed ({cause.reason or cause})"
        if isinstance(cause, socket.gaierror):
            return f"cannot connect to {shown}: {_unresolved(cause, url, where)}"
        if isinstance(cause, ConnectionRefusedError):
            return f"cannot connect to {shown}: connection refused"
        if isinstance(cause, ConnectionResetError):
            return f"no answer from {shown}: connection reset"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"no answer from {shown}: the connection closed ({error})"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {shown}: {str(error) or type(error).__name__}"
    return f"no answer from {shown}: {type(error).__name__} ({error})"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it: httpx wraps httpcore's error, which wraps the OS's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _shown(url: str) -> str:
    """The URL as a message may show it: without user information (a password in a URL
    would otherwise land in a log)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


def _timed_out(error: httpx.TimeoutException, url: str) -> str:
    phase = {
        httpx.ConnectTimeout: ("cannot connect to", "connect"),
        httpx.WriteTimeout: ("cannot send to", "write"),
        httpx.PoolTimeout: ("no free connection to", "pool"),
    }
    prefix, key = next(
        (found for kind, found in phase.items() if isinstance(error, kind)),
        ("no answer from", "read"),
    )
    seconds = None
    with contextlib.suppress(RuntimeError):  # raised outside a request: no timeout to name
        seconds = error.request.extensions.get("timeout", {}).get(key)
    after = f" after {seconds:g} s" if isinstance(seconds, int | float) else ""
    return f"{prefix} {url}: timed out{after}"


def _untrusted(error: ssl.SSLCertVerificationError, ca_bundle: str | None) -> str:
    reason = error.verify_message or error.reason or "verification failed"
    if error.verify_code not in UNTRUSTED_ISSUER:
        return f"certificate not valid ({reason})"
    untrusted = f"certificate not trusted ({reason})"
    if ca_bundle:
        return f"{untrusted}: add the CA that signed it to {ca_bundle}"
    return f"{untrusted}: set ca_bundle in the target to the CA that signed it"


def _unresolved(error: socket.gaierror, url: str, where: str) -> str:
    host = httpx.URL(url).host
    if error.errno in TRANSIENT_LOOKUP:
        return f"name {host} not resolved (EAI_AGAIN: the resolver did not answer)"
    if error.errno in UNKNOWN_NAME:
        return f"name {host} not resolved (EAI_NONAME: unknown name): check the host in {where}"
    return f"name {host} not resolved ({error.strerror})"
