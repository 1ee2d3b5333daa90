"""The two ways a scenario is replayed: over HTTP against `flowkit-loader serve
--upstream-quirks` in a subprocess (real tokens from its token endpoint), and in-process
against the store with `Principal`s standing in for the tokens."""

from __future__ import annotations

import gzip as gzip_module
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from loader.backends.server import DEFAULT_AUDIENCE, DEFAULT_CLIENTS, KEY_ID
from loader.backends.store import InvalidBody, Principal, Reply, Store
from loader.model import EntityKind
from tests.conftest import ROOT
from tests.replay.scenarios import Observed

START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_SERVING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)/v1")
# The development clients by the short names scenarios use.
CLIENT_IDS = {"admin": "dev-admin", "updater": "dev-updater", "reader": "dev-reader",
              "premium": "dev-premium"}  # fmt: skip


# -- over HTTP -------------------------------------------------------------------------


@dataclass
class ServeProcess:
    """`python -m loader serve --port 0 --upstream-quirks` on a database of its own."""

    db: Path
    log: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    base: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("FLOWKIT_SERVE_SECRET")}  # fmt: skip
        environ["FLOWKIT_SERVE_SECRET"] = self.secret
        command = [sys.executable, "-m", "loader", "serve", "--db", str(self.db),
                   "--host", "127.0.0.1", "--port", "0", "--upstream-quirks"]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=environ, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            announced = _SERVING.search(self.log.read_text(errors="replace"))
            if announced:
                self.base = announced.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"serve did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


@cache
def _forger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forged_token(kind: str) -> str:
    """Tokens serve must refuse: not signed by its key."""
    now = int(time.time())
    claims = {"iss": "forger", "sub": "forger@clients", "aud": DEFAULT_AUDIENCE, "iat": now,
              "exp": now + 3600, "scope": "admin write:data read:free_data",
              "permissions": ["admin"]}  # fmt: skip
    if kind == "garbage":
        return "garbage"
    if kind == "foreign":
        return jwt.encode(claims, _forger_key(), algorithm="RS256", headers={"kid": KEY_ID})
    if kind == "unknown-kid":
        return jwt.encode(claims, _forger_key(), algorithm="RS256", headers={"kid": "no-such"})
    if kind == "hs256":
        return jwt.encode(claims, "a shared secret of 32 bytes or more", algorithm="HS256")
    raise ValueError(f"unknown token {kind!r}")


class HttpCaller:
    """Sends scenario calls to a running serve, with tokens from its token endpoint."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.client = httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self.tokens: dict[str, str] = {}
        for name, client_id in CLIENT_IDS.items():
            answer = self.client.post(f"{server.base}/oauth/token", json={
                "client_id": client_id, "client_secret": server.secret,
                "audience": DEFAULT_AUDIENCE, "grant_type": "client_credentials"})  # fmt: skip
            answer.raise_for_status()
            self.tokens[name] = answer.json()["access_token"]

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = "admin",
        gzip: bool = False,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> Observed:
        sent: dict[str, str] = {}
        if token is not None:
            value = self.tokens.get(token) or forged_token(token)
            sent["Authorization"] = f"Bearer {value}"
        content = raw
        if raw is None and json is not None:
            # json.dumps, not httpx's encoder: NaN must reach the server (allow_nan).
            content = _json_bytes(json)
            sent["Content-Type"] = "application/json"
            if gzip:
                content = gzip_module.compress(content)
                sent["Content-Encoding"] = "gzip"
        sent.update(headers or {})
        url = (self.server.base if root else f"{self.server.base}/v1") + path
        answer = self.client.request(method, url, content=content, headers=sent)
        content_type = answer.headers.get("content-type", "")
        text = answer.text if answer.content else None
        body: Any = text
        if text is not None and content_type.startswith("application/json"):
            body = answer.json()
        return Observed(answer.status_code, content_type, body, text, dict(answer.headers))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


@contextmanager
def http_caller(directory: Path) -> Iterator[HttpCaller]:
    """A fresh serve on a fresh database, stopped whatever happens."""
    server = ServeProcess(directory / "serve.db", directory / "serve.log")
    try:
        server.start()
        caller = HttpCaller(server)
        try:
            yield caller
        finally:
            caller.close()
    finally:
        server.stop()


# -- in-process ------------------------------------------------------------------------

READ, WRITE, ADMIN = "read:free_data", "write:data", "admin"
Handler = Callable[[Store, tuple[str, ...], Any, Principal], Reply]


def principals() -> dict[str, Principal]:
    """The development clients' tokens as the server reads them."""
    by_id = {c.client_id: c for c in DEFAULT_CLIENTS}
    return {name: Principal(frozenset(by_id[cid].scope.split()),
                            frozenset(by_id[cid].permissions), f"{cid}@clients")
            for name, cid in CLIENT_IDS.items()}  # fmt: skip


def _dataset_write(replace: bool) -> Handler:
    def handle(store: Store, args: tuple[str, ...], body: Any, who: Principal) -> Reply:
        try:
            incoming = store.parse_dataset(body)
        except InvalidBody as error:
            return store.invalid(error)
        return store.write_dataset(incoming, replace=replace)

    return handle


def _mapping(delete: bool) -> Handler:
    def handle(store: Store, args: tuple[str, ...], body: Any, who: Principal) -> Reply:
        try:
            scope, mdid = store.parse_mapping(body)
        except InvalidBody as error:
            return store.invalid(error)
        return store.delete_mapping(scope, mdid) if delete else store.post_mapping(scope, mdid)

    return handle


def _key(kind: EntityKind, raw: str) -> Any:
    if kind in (EntityKind.CATEGORY, EntityKind.INDICATOR):
        return raw
    return int(raw) if raw.isdigit() else raw


def _routes() -> list[tuple[str, re.Pattern[str], str | None, Handler]]:
    """(method, path pattern, scope, handler): the REST routes over the store, as the
    server wires them."""
    routes: list[tuple[str, str, str | None, Handler]] = [
        ("GET", "/setup", None, lambda s, a, b, p: s.get_setup()),
        ("POST", "/setup", ADMIN, lambda s, a, b, p: s.post_setup(b)),
        ("PATCH", "/setup", ADMIN, lambda s, a, b, p: s.patch_setup(b)),
        ("DELETE", "/setup", ADMIN, lambda s, a, b, p: s.delete_setup()),
        ("GET", "/data_providers", None, lambda s, a, b, p: Reply(
            200, {"data_providers": s.get_setup().body["data_providers"]})),
        ("POST", "/data", WRITE, _dataset_write(replace=False)),
        ("PATCH", "/data", WRITE, _dataset_write(replace=True)),
        ("DELETE", "/data", WRITE, lambda s, a, b, p: s.delete_dataset(b)),
        ("POST", "/scope_mapping", WRITE, _mapping(delete=False)),
        ("DELETE", "/scope_mapping", WRITE, _mapping(delete=True)),
        ("POST", "/query", READ, lambda s, a, b, p: s.query(b, p)),
        ("POST", "/csv", READ, lambda s, a, b, p: s.csv(b, p)),
        ("GET", "/timerange/([^/]+)/([^/]+)/([0-9]+)/([0-9]+)", READ,
         lambda s, a, b, p: s.timerange(a[0], a[1], int(a[2]), int(a[3]), p)),
        ("GET", "/latest_date", None, lambda s, a, b, p: s.latest_date()),
    ]  # fmt: skip
    for kind in EntityKind:
        path = f"/{kind.value}"
        update = WRITE if kind is EntityKind.DATA_PROVIDER else ADMIN
        routes += [
            ("POST", path, ADMIN, lambda s, a, b, p, k=kind: s.post_entity(k, b)),
            ("PATCH", f"{path}/(.+)", update,
             lambda s, a, b, p, k=kind: s.patch_entity(k, _key(k, a[0]), b)),
            ("DELETE", f"{path}/(.+)", ADMIN,
             lambda s, a, b, p, k=kind: s.delete_entity(k, _key(k, a[0]))),
        ]  # fmt: skip
        if kind in Store.VISIBLE_BY:
            routes += [
                ("GET", path, READ, lambda s, a, b, p, k=kind: s.list_entities(k, p)),
                ("GET", f"{path}/(.+)", READ,
                 lambda s, a, b, p, k=kind: s.get_entity(k, _key(k, a[0]), p)),
            ]  # fmt: skip
        if kind in (EntityKind.INDICATOR, EntityKind.SPATIAL_RESOLUTION,
                    EntityKind.TEMPORAL_RESOLUTION):  # fmt: skip
            routes.append(("GET", f"{path}_for_category/(.+)", READ,
                           lambda s, a, b, p, k=kind: s.for_category(k, a[0], p)))  # fmt: skip
    return [(m, re.compile(f"^{pattern}$"), scope, h) for m, pattern, scope, h in routes]


class StoreCaller:
    """Dispatches the scenario's REST calls to a `Store(quirks=True)` directly; the
    transport (gzip, raw bodies, forged tokens, other routes) is not there to replay."""

    def __init__(self, path: Path) -> None:
        self.store = Store(str(path), quirks=True)
        self.principals = principals()
        self.routes = _routes()

    def close(self) -> None:
        self.store.close()

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = "admin",
        gzip: bool = False,  # the same body either way: nothing to do in-process
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> Observed:
        if raw is not None or headers or root:
            raise ValueError(f"{method} {path}: raw bodies, headers and routes are HTTP-only")
        body = _round_trip(json)
        for route_method, pattern, scope, handler in self.routes:
            match = pattern.match(path)
            if route_method != method or not match:
                continue
            who = Principal(frozenset(), frozenset())
            if scope is not None:
                if token not in self.principals:
                    raise ValueError(f"token {token!r} is HTTP-only")
                who = self.principals[token]
                if scope not in who.scopes:
                    message = f"Invalid token: Required permissions ['{scope}'] not present"
                    return _observed(Reply(401, message))
            return _observed(handler(self.store, match.groups(), body, who))
        raise ValueError(f"no route for {method} {path}")


def _round_trip(value: Any) -> Any:
    """The body as the server would parse it from JSON (tuples become lists, ...)."""
    return None if value is None else json.loads(json.dumps(value))


def _observed(reply: Reply) -> Observed:
    """A store reply as the server would send it (server._respond)."""
    if reply.plain:
        text = str(reply.body)
        media = "text/plain; charset=utf-8" if reply.status >= 400 else "text/csv"
        return Observed(reply.status, media, text, text)
    if reply.body is None and reply.status == 204:
        return Observed(reply.status, "", None, None)
    text = json.dumps(reply.body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Observed(reply.status, "application/json", reply.body, text)


@contextmanager
def store_caller(directory: Path) -> Iterator[StoreCaller]:
    caller = StoreCaller(directory / "store.db")
    try:
        yield caller
    finally:
        caller.close()
