"""Bearer tokens for the remote backend: OAuth2 client credentials (Auth0's request and
response shapes) or a static token, one provider per role.

The backend does not check expiry, so providers refresh before `exp` themselves. A
token's `scope` and `permissions` are read (not verified: only the server can) before any
write, so that a missing scope fails at once, naming it. Secrets are read from the
environment when needed and are never kept in a repr, a message or a file.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from loader.model import Credential, LoaderError

REFRESH_MARGIN = 60.0  # seconds before `exp` at which a token is renewed


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

    def __repr__(self) -> str:  # never the token itself
        return f"Token(sub={self.subject!r}, scope={sorted(self.scopes)!r})"


class TokenProvider:
    """Obtains, caches and renews one credential's token; safe to share between threads."""

    def __init__(
        self,
        credential: Credential,
        http: httpx.Client | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credential = credential
        self.http = http
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenProvider({self.credential.kind}, client_id={self.credential.client_id!r})"

    def _secret(self) -> str:
        value = self.environ.get(self.credential.secret_env)
        if not value:
            raise AuthError(f"environment variable {self.credential.secret_env} is not set")
        return value

    def current(self) -> Token:
        """A token valid for at least REFRESH_MARGIN more seconds."""
        with self._lock:
            token = self._token
            if token is None or self._expiring(token):
                token = self._token = self._obtain()
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _expiring(self, token: Token) -> bool:
        expires = token.expires_at
        return expires is not None and expires - self.clock() < REFRESH_MARGIN

    def _obtain(self) -> Token:
        if self.credential.kind == "token":
            token = Token(self._secret(), decode_claims(self._secret()))
            if self._expiring(token):
                raise AuthError(
                    f"the token in {self.credential.secret_env} has expired (or expires "
                    "within a minute)"
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
        http = self.http or httpx.Client(timeout=30)
        try:
            response = http.post(str(credential.token_url), json=body)
        except httpx.HTTPError as error:
            raise AuthError(
                f"token request to {credential.token_url} failed: {type(error).__name__}"
            ) from None
        finally:
            if self.http is None:
                http.close()
        if response.status_code != 200:
            raise AuthError(
                f"token request to {credential.token_url} for client "
                f"{credential.client_id}: {response.status_code} {_describe(response)}"
            )
        try:
            value = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AuthError(
                f"token response from {credential.token_url} has no access_token"
            ) from None
        return Token(value, decode_claims(value))


def _describe(response: httpx.Response) -> str:
    """Auth0's error body in a few words (never echoing anything we sent)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, Mapping):
        return str(body.get("error_description") or body.get("error") or response.reason_phrase)
    return response.reason_phrase
