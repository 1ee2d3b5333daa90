"""TLS is always verified; a target's `ca_bundle` adds a private CA to the public roots, for
the backend and the token endpoint alike. `serve` behind a TLS proxy whose certificate a
private CA signed stands for a self-hosted backend and issuer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.backends.auth import AuthError, TokenProvider
from loader.backends.remote import RemoteBackend, RequestSettings
from loader.backends.transport import tls_context
from loader.cli import cli
from loader.model import BackendError, LoaderError, Role
from tests.manifests import remote_manifest
from tests.proxying import private_ca, proxy
from tests.serving import SECRET, SECRET_ENV, credential, serving

UNTRUSTED = "certificate not trusted (unable to get local issuer certificate)"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https base URL of `serve` behind a privately signed certificate, the CA's PEM)."""
    ca, context = private_ca(tmp_path)
    with serving(tmp_path / "serve.db") as base, proxy(base, tls=context) as front:
        yield front.url, ca


def provider(base: str, ca_bundle: str | None = None) -> TokenProvider:
    return TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: SECRET},
                         ca_bundle=ca_bundle)  # fmt: skip


def test_an_unknown_ca_is_refused_at_once_naming_the_url_and_the_reason(
    tls_server: tuple[str, Path],
) -> None:
    base, _ = tls_server
    waits: list[float] = []
    backend = RemoteBackend(f"{base}/v1", {}, settings=RequestSettings(sleep=waits.append))
    with pytest.raises(BackendError) as refused:
        backend.wait_ready(deadline=30)  # waiting cannot make a certificate trusted
    assert waits == []  # the first refusal ended the wait: no poll was waited for
    assert str(refused.value) == (
        f"GET /heartbeat: cannot connect to {base}/v1/heartbeat: {UNTRUSTED}: set ca_bundle "
        "in the target to the CA that signed it"
    )
    with pytest.raises(AuthError) as token:
        provider(base).current()
    assert str(token.value) == (
        f"token request for client dev-admin: cannot connect to {base}/oauth/token: "
        f"{UNTRUSTED}: set ca_bundle in the target to the CA that signed it"
    )


def test_a_bundle_without_the_signing_ca_says_so(
    tls_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = tls_server
    other, _ = private_ca(tmp_path, "other.pem")
    with pytest.raises(AuthError) as token:
        provider(base, str(other)).current()
    assert str(token.value) == (
        f"token request for client dev-admin: cannot connect to {base}/oauth/token: "
        f"{UNTRUSTED}: add the CA that signed it to {other}"
    )


def test_a_private_ca_is_trusted_by_the_backend_and_the_token_endpoint(
    tls_server: tuple[str, Path],
) -> None:
    base, ca = tls_server
    backend = RemoteBackend(f"{base}/v1", dict.fromkeys(Role, provider(base, str(ca))),
                            settings=RequestSettings(ca_bundle=str(ca)))  # fmt: skip
    backend.wait_ready(deadline=5)
    backend.preflight([Role.ADMIN])  # a token, fetched over TLS
    assert backend.read_setup().languages == ()
    backend.close()


def test_check_trusts_the_targets_ca_bundle_for_both_endpoints(
    tls_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, ca = tls_server
    manifest = remote_manifest(tmp_path, base, "dev-admin")
    url = f"    url: {base}/v1\n"
    manifest.write_text(manifest.read_text().replace(url, f"{url}    ca_bundle: {ca.name}\n"))
    result = CliRunner().invoke(cli, ["check", str(manifest)], env={SECRET_ENV: SECRET})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"remote: {base}/v1 is ready"


def test_a_ca_bundle_adds_to_the_public_roots(tmp_path: Path) -> None:
    """A hosted issuer (Auth0) still needs the public roots beside the private CA."""
    ca, _ = private_ca(tmp_path)
    public = tls_context(None).cert_store_stats()["x509_ca"]
    assert public > 50  # certifi's roots (or $SSL_CERT_FILE's)
    assert tls_context(str(ca)).cert_store_stats()["x509_ca"] == public + 1


def test_a_bundle_that_holds_no_certificate_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(LoaderError) as refused:
        RemoteBackend("https://127.0.0.1:9/v1", {}, settings=RequestSettings(ca_bundle=str(bad)))
    assert str(refused.value) == (
        f"ca_bundle {bad} cannot be read as PEM certificates (NO_CERTIFICATE_OR_CRL_FOUND): "
        "set ca_bundle in the target to a PEM file of the private CA's certificate"
    )
