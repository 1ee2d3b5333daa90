"""Bearer tokens for the remote backend: OAuth2 client credentials (Auth0's request and
response shapes) or a static token, one provider per credential.

- The backend does not check expiry, so providers renew a token before `exp` themselves:
  a minute before, or a quarter of its lifetime before for a token that lives less than
  four minutes (a fixed minute would fetch a token that lives a minute or less for almost
  every request, and issuers rate-limit machine tokens).
- A token the server refused (401: the issuer rotated its signing key, the backend
  restarted with a new one) is renewed once per token value, whichever and however many
  threads saw the refusal: one token request, then each refused request is sent again once.
- A token's `scope` and `permissions` are read (not verified: only the server can) before
  any write, so that a missing scope fails at once, naming it.
- Token requests trust what the backend's requests trust (the public roots and the
  target's `ca_bundle`); a failure names the token URL and its cause.
- Secrets are read from the environment when needed and are never kept in a repr, a
  message or a file.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from loader.backends.transport import describe, tls_context_for
from loader.model import Credential, LoaderError

MAX_MARGIN = 60.0  # seconds before `exp` at which a long-lived token is renewed
MARGIN_SHARE = 0.25  # of a token's lifetime, for tokens that live less than 4 minutes
TOKEN_TIMEOUT = 30.0  # seconds for a token request


def renewal_margin(lifetime: float | None) -> float:
    """How long before `exp` a token that lives `lifetime` seconds is renewed."""
    if lifetime is None or lifetime <= 0:
        return MAX_MARGIN
    return min(MAX_MARGIN, lifetime * MARGIN_SHARE)


class AuthError(LoaderError):
    """A token could not be obtained or lacks what a call needs."""


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies; we only read scopes and exp)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as error:
        raise AuthError(f"the token is not a JWT ({type(error).__name__})") from None
    if not isinstance(claims, dict):
        raise AuthError("the token's claims are not an object")
    return claims


@dataclass(frozen=True)
class Token:
    value: str
    claims: Mapping[str, Any]
    lifetime: float | None = None  # seconds from issue to `exp`, when known

    @property
    def scopes(self) -> frozenset[str]:
        scope = self.claims.get("scope")
        return frozenset(scope.split()) if isinstance(scope, str) else frozenset()

    @property
    def permissions(self) -> frozenset[str]:
        permissions = self.claims.get("permissions")
        return frozenset(map(str, permissions)) if isinstance(permissions, list) else frozenset()

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub", "unknown"))

    @property
    def expires_at(self) -> float | None:
        exp = self.claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None

    @property
    def margin(self) -> float:
        """Seconds before `exp` at which this token is renewed."""
        return renewal_margin(self.lifetime)

    def __repr__(self) -> str:  # never the token itself
        return f"Token(sub={self.subject!r}, scope={sorted(self.scopes)!r})"


def _lifetime(claims: Mapping[str, Any], now: float) -> float | None:
    """How long a token lives: `exp - iat` when the issuer says when it issued it, else
    what is left of it now (a static token's age is not known)."""
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return None
    return float(exp - iat) if isinstance(iat, int | float) else float(exp) - now


class TokenProvider:
    """Obtains, caches and renews one credential's token; safe to share between threads."""

    def __init__(
        self,
        credential: Credential,
        http: httpx.Client | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        *,
        ca_bundle: str | None = None,
        timeout: float = TOKEN_TIMEOUT,
    ) -> None:
        self.credential = credential
        self.http = http
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None
        self._token: Token | None = None
        # Whether the token held was obtained because the server refused its predecessor:
        # if it is refused too, another would be as well (the backend does not trust the
        # issuer), and renewing again would only spend the issuer's rate limit.
        self._after_refusal = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenProvider({self.credential.kind}, client_id={self.credential.client_id!r})"

    def _secret(self) -> str:
        value = self.environ.get(self.credential.secret_env)
        if not value:
            raise AuthError(
                f"environment variable {self.credential.secret_env} is not set: set it to the "
                + ("token" if self.credential.kind == "token" else "client secret")
            )
        return value

    def current(self) -> Token:
        """A token that is not within its renewal margin of `exp`."""
        with self._lock:
            token = self._token
            if token is None or self._expiring(token):
                token = self._token = self._obtain()
                self._after_refusal = False
            return token

    def renew(self, refused: Token) -> Token | None:
        """A token to use instead of `refused`, which the server answered 401 to; None when
        renewing cannot help (a static token; a token renewed after a refusal refused too).

        However many threads call this with one refused token, one token is requested: the
        first renews it, the others find it renewed."""
        with self._lock:
            token = self._token
            if token is not None and token.value != refused.value:
                return token  # renewed meanwhile, by expiry or by another refusal
            if self.credential.kind == "token" or self._after_refusal:
                return None
            token = self._token = self._obtain()
            self._after_refusal = True
            return token

    def accepted(self, token: Token) -> None:
        """The server took `token`: a token renewed after a refusal is proven good, and a
        later refusal of it (the key rotated again) may renew it again."""
        if self._after_refusal:  # read without the lock: the common case costs nothing
            with self._lock:
                if self._token is not None and self._token.value == token.value:
                    self._after_refusal = False

    def refusal_hint(self) -> str:
        """What to do when the server keeps refusing this credential's tokens."""
        if self.credential.kind == "token":
            env = self.credential.secret_env
            return f"the token in {env} was refused: set {env} to a fresh token"
        return (
            f"a new token from {self.credential.token_url} was refused too: the backend does "
            "not trust that issuer; check auth.token_url and auth.audience in the target"
        )

    def _expiring(self, token: Token) -> bool:
        expires = token.expires_at
        return expires is not None and expires - self.clock() < token.margin

    def _obtain(self) -> Token:
        if self.credential.kind == "token":
            value = self._secret()
            claims = decode_claims(value)
            token = Token(value, claims, _lifetime(claims, self.clock()))
            if self._expiring(token):
                env = self.credential.secret_env
                raise AuthError(
                    f"the token in {env} has expired (or expires within {token.margin:.0f} s): "
                    f"set {env} to a fresh token"
                )
            return token
        return self._client_credentials()

    def _client_credentials(self) -> Token:
        credential = self.credential
        body = {
            "client_id": credential.client_id,
            "client_secret": self._secret(),
            "audience": credential.audience,
            "grant_type": "client_credentials",
        }
        url = str(credential.token_url)
        http = self.http
        if http is None:
            if self._tls is None:
                self._tls = tls_context_for(url, self.ca_bundle)
            http = httpx.Client(timeout=self.timeout, verify=self._tls)
        try:
            response = http.post(url, json=body)
        except httpx.TransportError as error:
            cause = describe(error, url, ca_bundle=self.ca_bundle,
                             where="the target's auth.token_url")  # fmt: skip
            raise AuthError(f"token request for client {credential.client_id}: {cause}") from None
        finally:
            if self.http is None:
                http.close()
        if response.status_code != 200:
            raise AuthError(
                f"token request to {url} for client {credential.client_id}: "
                f"{response.status_code} {_describe(response)}{_token_hint(response, credential)}"
            )
        try:
            value = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"token response from {url} has no access_token") from None
        claims = decode_claims(value)
        return Token(value, claims, _lifetime(claims, self.clock()))


def _token_hint(response: httpx.Response, credential: Credential) -> str:
    """What to do about a refused token request, where Auth0's answer says it."""
    if response.status_code == 401:
        return f": check client_id and the secret in {credential.secret_env}"
    if response.status_code == 403:
        return ": check auth.audience in the target"
    return ""


def _describe(response: httpx.Response) -> str:
    """Auth0's error body in a few words (never echoing anything we sent)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, Mapping):
        return str(body.get("error_description") or body.get("error") or response.reason_phrase)
    return response.reason_phrase
