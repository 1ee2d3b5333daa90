"""Tokens end cleanly, counted at the issuer.

Every request goes through a loopback proxy in front of `flowkit-loader serve`, which
counts the token requests per client and the 401s per token subject. A restart of the
backend and its issuer with a new signing key is the proxy switching to a second `serve`
of the same database: each `serve` generates its own key when it starts, so every token
the client holds is refused from then on ("Could not decode token"), and there is no
gap in which connections are refused to blur the count.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loader import applying
from loader.backends.auth import AuthError, TokenProvider, renewal_margin
from loader.backends.remote import RemoteBackend
from loader.execute import Outcome, OutcomeStatus
from loader.model import Credential, Role, ScopeError
from tests.helpers import example
from tests.manifests import example_manifest
from tests.proxying import proxy
from tests.serving import SECRET, SECRET_ENV, credential, remote_backend, serving

DATE_FORMATS = {2: "%Y-%m", 4: "%Y-%m-%d"}
ENVIRON = {SECRET_ENV: SECRET}
ROLES = {Role.ADMIN: "dev-admin", Role.UPDATER: "dev-updater", Role.READER: "dev-admin"}


def client(base: str, clients: dict[Role, str], **options: object) -> RemoteBackend:
    """A RemoteBackend with one provider per client, shared by its roles (as the factory
    makes them from a manifest)."""
    providers = {name: TokenProvider(credential(base, name), environ=ENVIRON)
                 for name in set(clients.values())}  # fmt: skip
    tokens = {role: providers[name] for role, name in clients.items()}
    settings: dict[str, object] = {"date_formats": DATE_FORMATS, "backoff": 0.01,
                                   "existence_delay": 0.2, **options}  # fmt: skip
    return remote_backend(f"{base}/v1", tokens, **settings)


def test_dozens_of_concurrent_refusals_renew_each_token_once(tmp_path: Path) -> None:
    config, datasets = example()
    with (
        serving(tmp_path / "serve.db") as first,
        serving(tmp_path / "serve.db") as second,
        proxy(first) as front,
    ):
        backend = client(front.url, ROLES, parallelism=32)
        backend.replace_setup(config)
        backend.preflight([Role.UPDATER, Role.READER])
        assert front.tokens() == {"dev-admin": 1, "dev-updater": 1}
        front.switch(second)  # a new signing key: every token held is refused from now on
        front.refusal_gate = 24  # two dozen refusals answered together
        with ThreadPoolExecutor(32) as pool:
            writes = [pool.submit(backend.create_dataset, d) for d in datasets[:16]]
            reads = [pool.submit(backend.visible_mdids, backend.exact_range(d.key))
                     for d in datasets[16:32]]  # fmt: skip
            created = [future.result() for future in writes]
            for future in reads:
                future.result()
        refused = front.refusals()
        assert front.tokens() == {"dev-admin": 2, "dev-updater": 2}  # one renewal each
        assert sum(refused.values()) >= 24, refused  # at least the gate's two dozen
        assert min(refused.values()) >= 8, refused  # for each role
        assert all(write.created for write in created)  # a 401 wrote nothing: sent again
        for dataset in datasets[:16]:
            assert len(backend.visible_mdids(backend.exact_range(dataset.key))) == 1
        backend.close()


def split_manifest(directory: Path, base: str) -> Path:
    """The example manifest aimed at `base`, with an admin and an updater credential."""
    manifest = example_manifest(directory, base)
    secret = f"client_secret: '${{{SECRET_ENV}}}'"
    text = manifest.read_text().replace(
        "      all: {client_id: dev-admin, ",
        f"      admin: {{client_id: dev-admin, {secret}}}\n"
        "      updater: {client_id: dev-updater, ",
    )
    manifest.write_text(text)
    return manifest


def test_an_apply_rides_out_a_restart_with_a_new_signing_key(tmp_path: Path) -> None:
    """The issue's case: `serve` restarted mid-apply with a new key. Every change is done,
    and each role's token was renewed exactly once."""
    with (
        serving(tmp_path / "serve.db") as first,
        serving(tmp_path / "serve.db") as second,
        proxy(first) as front,
    ):
        manifest = split_manifest(tmp_path, front.url)
        assert applying.apply(manifest, environ=ENVIRON).result.ok
        # A new revision rewrites every dataset and re-grants it (the updater's work);
        # two new labels are two config updates, one at a time (the admin's).
        manifest.write_text(manifest.read_text().replace("revision: v1.0-example",
                                                         "revision: v2.0-example"))  # fmt: skip
        config_file = tmp_path / "example" / "config.json"
        config = json.loads(config_file.read_text())
        for indicator in config["indicators"][:2]:
            indicator["label"] += " (revised)"
        config_file.write_text(json.dumps(config))
        held: dict[str, int] = {}
        lock = threading.Lock()

        def restart_after_the_first_change(outcome: Outcome) -> None:
            with lock:
                if not held:
                    held.update(front.tokens())
                    front.switch(second)

        applied = applying.apply(manifest, environ=ENVIRON, progress=restart_after_the_first_change)
    failed = [o.message for o in applied.result.outcomes if o.status is not OutcomeStatus.DONE]
    assert applied.result.ok, failed[:3]
    assert len(applied.result.outcomes) >= 90  # the 46 datasets, their grants, two labels
    renewed = {name: count - held.get(name, 0) for name, count in front.tokens().items()}
    assert renewed == {"dev-admin": 1, "dev-updater": 1}
    assert front.refusals().keys() == {"dev-admin@clients", "dev-updater@clients"}


def test_each_rotation_of_the_key_is_one_renewal(tmp_path: Path) -> None:
    """A token renewed after a refusal and then accepted may be renewed again when the
    key rotates once more."""
    _, datasets = example()
    with (
        serving(tmp_path / "serve.db") as first,
        serving(tmp_path / "serve.db") as second,
        serving(tmp_path / "serve.db") as third,
        proxy(first) as front,
    ):
        backend = client(front.url, dict.fromkeys(Role, "dev-admin"))
        query = backend.exact_range(datasets[0].key)
        for upstream in (first, second, third):
            front.switch(upstream)
            assert backend.visible_mdids(query) == frozenset()
            assert backend.visible_mdids(query) == frozenset()
        backend.close()
    assert front.tokens() == {"dev-admin": 3}
    assert front.refusals() == {"dev-admin@clients": 2}


def test_a_static_token_that_is_refused_says_to_set_a_fresh_one(tmp_path: Path) -> None:
    with (
        serving(tmp_path / "serve.db") as first,
        serving(tmp_path / "serve.db") as second,
        proxy(first) as front,
    ):
        value = TokenProvider(credential(front.url, "dev-admin"), environ=ENVIRON).current().value
        static = TokenProvider(Credential("token", "FLOWKIT_TOKEN"),
                               environ={"FLOWKIT_TOKEN": value})  # fmt: skip
        backend = RemoteBackend(f"{front.url}/v1", dict.fromkeys(Role, static),
                                date_formats=DATE_FORMATS)  # fmt: skip
        _, datasets = example()
        query = backend.exact_range(datasets[0].key)
        assert backend.visible_mdids(query) == frozenset()
        front.switch(second)
        with pytest.raises(ScopeError) as refused:
            backend.visible_mdids(query)
    assert str(refused.value) == (
        "POST /query: 401 Could not decode token (the token in FLOWKIT_TOKEN was refused: "
        "set FLOWKIT_TOKEN to a fresh token)"
    )
    assert front.tokens() == {"dev-admin": 1}  # the one that made the static token
    assert value not in str(refused.value) and "eyJ" not in str(refused.value)


def test_a_backend_that_refuses_fresh_tokens_too_costs_one_renewal(tmp_path: Path) -> None:
    """The issuer's tokens are not the backend's (a wrong token URL): one renewal, then
    every refusal says so without asking the issuer again, however many threads ask."""
    with (
        serving(tmp_path / "issuer.db") as issuer,
        serving(tmp_path / "serve.db") as other,
        proxy(issuer) as tokens,
    ):
        provider = TokenProvider(credential(tokens.url, "dev-admin"), environ=ENVIRON)
        backend = RemoteBackend(f"{other}/v1", dict.fromkeys(Role, provider),
                                date_formats=DATE_FORMATS)  # fmt: skip
        _, datasets = example()
        queries = [backend.exact_range(d.key) for d in datasets[:16]]

        def attempt(query: object) -> str:
            with pytest.raises(ScopeError) as refused:
                backend.visible_mdids(query)  # type: ignore[arg-type]
            return str(refused.value)

        with ThreadPoolExecutor(8) as pool:
            messages = set(pool.map(attempt, queries))
    assert messages == {
        f"POST /query: 401 Could not decode token (a new token from {tokens.url}/oauth/token "
        "was refused too: the backend does not trust that issuer; check auth.token_url and "
        "auth.audience in the target)"
    }
    assert tokens.tokens() == {"dev-admin": 2}  # the first token, one renewal


def test_a_short_lived_token_is_fetched_once_not_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30-s token is renewed 7.5 s before `exp`, not a minute before (which is before
    it was even issued: a token request per call)."""
    monkeypatch.setenv("FLOWKIT_SERVE_TOKEN_LIFETIME", "30")
    _, datasets = example()
    with serving(tmp_path / "serve.db") as base, proxy(base) as front:
        backend = client(front.url, dict.fromkeys(Role, "dev-admin"))
        for dataset in datasets[:40]:
            backend.visible_mdids(backend.exact_range(dataset.key))
        backend.close()
    assert front.tokens() == {"dev-admin": 1}
    assert len(front.seen) == 41


def test_a_token_is_renewed_a_quarter_of_its_lifetime_before_exp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWKIT_SERVE_TOKEN_LIFETIME", "40")
    offset = [0.0]
    with serving(tmp_path / "serve.db") as base, proxy(base) as front:
        provider = TokenProvider(credential(front.url, "dev-admin"), environ=ENVIRON,
                                 clock=lambda: time.time() + offset[0])  # fmt: skip
        token = provider.current()
        assert token.lifetime == 40 and token.margin == 10
        expires = token.expires_at
        assert expires is not None
        offset[0] = expires - 10.5 - time.time()  # 10.5 s left: kept
        assert provider.current() is token
        offset[0] = expires - 9.5 - time.time()  # 9.5 s left: renewed
        assert provider.current() is not token
        offset[0] = 0.0
        provider.current()
    assert front.tokens() == {"dev-admin": 2}
    assert (renewal_margin(3600), renewal_margin(60), renewal_margin(None)) == (60, 15, 60)


def test_token_refusals_say_what_to_do(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db") as base:
        url = f"{base}/oauth/token"
        wrong_secret = TokenProvider(credential(base, "dev-admin"), environ={SECRET_ENV: "x"})
        with pytest.raises(AuthError) as unauthorized:
            wrong_secret.current()
        assert str(unauthorized.value) == (
            f"token request to {url} for client dev-admin: 401 Unauthorized: check client_id "
            f"and the secret in {SECRET_ENV}"
        )
        audience = Credential("client_credentials", SECRET_ENV, client_id="dev-admin",
                              token_url=url, audience="https://wrong.example")  # fmt: skip
        with pytest.raises(AuthError) as forbidden:
            TokenProvider(audience, environ=ENVIRON).current()
        assert str(forbidden.value) == (
            f"token request to {url} for client dev-admin: 403 Service not enabled within "
            "domain: https://wrong.example: check auth.audience in the target"
        )
        with pytest.raises(AuthError) as unset:
            TokenProvider(credential(base, "dev-admin"), environ={}).current()
        assert str(unset.value) == (
            f"environment variable {SECRET_ENV} is not set: set it to the client secret"
        )
        token = TokenProvider(credential(base, "dev-admin"), environ=ENVIRON).current()
    expired = TokenProvider(Credential("token", "FLOWKIT_TOKEN"),
                            environ={"FLOWKIT_TOKEN": token.value},
                            clock=lambda: time.time() + 3600)  # fmt: skip
    with pytest.raises(AuthError) as stale:
        expired.current()
    assert str(stale.value) == (
        "the token in FLOWKIT_TOKEN has expired (or expires within 60 s): set FLOWKIT_TOKEN "
        "to a fresh token"
    )
