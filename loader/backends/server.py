"""`flowkit-loader serve`: the local backend over the real service's REST contract.

Routes, status codes, bodies (JSON or gzip) and the auth model are the real service's:
RS256 bearer JWTs, endpoint scopes from the `scope` claim, visibility from `permissions`.
Beside the API it serves an OAuth2 client-credentials token endpoint with Auth0's request
and response shapes (audience included) and its JWKS, for a set of development clients,
so that a loader's real token flow runs against it.

Deliberate differences from upstream: token expiry is checked, and a request without a
token answers 401 (upstream: 500). As upstream (FastAPI), an unknown route or method
answers JSON `{"detail": ...}`, and a body sent with a Content-Type other than JSON is
not read as JSON (so it fails validation). With `quirks` the store reproduces upstream's
hazards (see store.py). With a cost model, each request and each value written or read
costs time as on the real service, so that client benchmarks against `serve` mean
something.

This module is the only user of starlette, uvicorn and PyJWT; plan and apply never
import it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import json
import os
import secrets
import socket
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from loader.backends.factory import SQLITE_HEADER
from loader.backends.store import INTERNAL_ERROR, InvalidBody, Principal, Reply, Store
from loader.contract import (
    ADMIN,
    READ_FREE_DATA,
    READ_PREMIUM_DATA,
    SCOPES,
    SEES_EVERYTHING,
    WRITE_DATA,
    entity_write_scope,
)
from loader.model import EntityKind, LoaderError

API_VERSION = "1.3.0"
KEY_ID = "flowkit-loader-serve"
DEFAULT_AUDIENCE = "https://flowkit-ui-backend.local"
TOKEN_LIFETIME = 3600
SECRET_ENV = "FLOWKIT_SERVE_SECRET"
# A request body's bound once decompressed: well above the largest body the loader sends
# (a national origin-destination dataset is hundreds of MB of JSON), and what one request
# may make the server hold in memory.
MAX_BODY_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class DevClient:
    """A development client of the token endpoint: what its tokens may call and see."""

    client_id: str
    scope: str
    permissions: tuple[str, ...]


ADMIN_CLIENT = "dev-admin"  # sees everything: the one a manifest target uses
DEFAULT_CLIENTS = (
    DevClient(
        ADMIN_CLIENT,
        " ".join((*SCOPES, "profile")),
        (SEES_EVERYTHING,),
    ),
    DevClient("dev-updater", WRITE_DATA, ()),
    DevClient("dev-reader", READ_FREE_DATA, (READ_FREE_DATA,)),
    DevClient("dev-premium", f"{READ_FREE_DATA} {READ_PREMIUM_DATA}", (READ_PREMIUM_DATA,)),
)


def secret_variable(client_id: str, environ: Mapping[str, str]) -> str:
    """Where a development client's secret is: FLOWKIT_SERVE_SECRET_<ID> when set, else
    FLOWKIT_SERVE_SECRET."""
    own = "FLOWKIT_SERVE_SECRET_" + client_id.upper().replace("-", "_")
    return own if environ.get(own) else SECRET_ENV


def client_secret(client_id: str, environ: Mapping[str, str]) -> str | None:
    """A development client's secret (see `secret_variable`).

    An empty value is no secret: CI systems expand a missing secret to "", and an empty
    secret would hand admin tokens to anyone who sends an empty one."""
    return environ.get(secret_variable(client_id, environ)) or None


@dataclass
class CostModel:
    """Time the real service spends: per request, and per value written or read (values
    are serialised, as the real service's single database makes them); and, with a
    `capacity`, how many requests it serves at once: as many again wait their turn, and
    past that a request answers 429 at once, as a loaded service behind a gateway does.
    A client that sends more than the capacity then sees latency rise, then 429s."""

    per_request: float = 0.005
    per_value: float = 0.00004
    capacity: int | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _serving: asyncio.Semaphore | None = field(default=None, repr=False)
    _present: int = field(default=0, repr=False)  # requests served or waiting

    def admits(self) -> bool:
        """Whether a new request may wait for a turn (or is served at once)."""
        return self.capacity is None or self._present < 2 * self.capacity

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One request served, once one of `capacity` turns is free."""
        if self.capacity is None:
            yield
            return
        if self._serving is None:  # made in the server's event loop
            self._serving = asyncio.Semaphore(self.capacity)
        self._present += 1
        try:
            async with self._serving:
                yield
        finally:
            self._present -= 1

    async def charge(self, values: int) -> None:
        await asyncio.sleep(self.per_request)
        if values:
            async with self._lock:
                await asyncio.sleep(self.per_value * values)


@dataclass
class Authority:
    """Issues and checks the RS256 tokens of the development clients."""

    audience: str = DEFAULT_AUDIENCE
    clients: Sequence[DevClient] = DEFAULT_CLIENTS
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    issuer: str = "flowkit-loader-serve"

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID,
                 "n": b64(numbers.n), "e": b64(numbers.e)}
            ]
        }  # fmt: skip

    @property
    def lifetime(self) -> int:
        """Seconds a token lives: an hour, or $FLOWKIT_SERVE_TOKEN_LIFETIME (short-lived
        tokens, as some issuers give machines, for testing a client's renewal)."""
        text = self.environ.get("FLOWKIT_SERVE_TOKEN_LIFETIME", "")
        return int(text) if text.isdigit() and int(text) > 0 else TOKEN_LIFETIME

    def issue(self, client: DevClient, lifetime: int = TOKEN_LIFETIME) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": f"{client.client_id}@clients",
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime,
            "scope": client.scope,
            "permissions": list(client.permissions),
            "gty": "client-credentials",
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KEY_ID})

    def token_reply(self, body: Any) -> tuple[int, dict[str, Any]]:
        """POST /oauth/token as Auth0 answers the client-credentials grant."""
        if not isinstance(body, Mapping) or body.get("grant_type") != "client_credentials":
            return 400, {"error": "invalid_request", "error_description": "Unsupported grant"}
        client = next((c for c in self.clients if c.client_id == body.get("client_id")), None)
        secret = client_secret(client.client_id, self.environ) if client else None
        given = body.get("client_secret")
        if (
            client is None
            or secret is None
            or not isinstance(given, str)
            or not secrets.compare_digest(given, secret)
        ):
            return 401, {"error": "access_denied", "error_description": "Unauthorized"}
        if body.get("audience") != self.audience:
            return 403, {
                "error": "access_denied",
                "error_description": (f"Service not enabled within domain: {body.get('audience')}"),
            }
        return 200, {
            "access_token": self.issue(client, self.lifetime),
            "expires_in": self.lifetime,
            "token_type": "Bearer",
            "scope": client.scope,
        }

    def principal(self, header: str | None) -> Principal | Reply:
        """The caller of an API request, or the reply that refuses it."""
        if not header or not header.startswith("Bearer "):
            return Reply(401, "Not authenticated")  # upstream answers 500 here
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer ").strip(),
                self.key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_iss": False, "require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            return Reply(401, "Token expired")  # upstream does not check expiry
        except jwt.PyJWTError:
            return Reply(401, "Could not decode token")
        scope, permissions, subject = (
            claims.get("scope"), claims.get("permissions"), claims.get("sub"),
        )  # fmt: skip
        if not isinstance(scope, str) or not isinstance(permissions, list) or not subject:
            return Reply(500, INTERNAL_ERROR, plain=True)
        return Principal(frozenset(scope.split()), frozenset(map(str, permissions)), str(subject))


def _respond(reply: Reply) -> Response:
    if reply.plain:
        media = "text/plain; charset=utf-8" if reply.status >= 400 else "text/csv"
        return PlainTextResponse(str(reply.body), status_code=reply.status, media_type=media)
    if reply.body is None and reply.status == 204:
        return Response(status_code=204)
    return JSONResponse(reply.body, status_code=reply.status)


class Api:
    """The routes, over one store, one authority and an optional cost model."""

    def __init__(
        self,
        store: Store,
        authority: Authority,
        cost: CostModel | None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.store = store
        self.authority = authority
        self.cost = cost
        self.max_body = max_body

    async def body(self, request: Request) -> Any:
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
        raw = await read_body(request, self.max_body, gzipped=gzipped)
        if not raw:
            return None
        if not _is_json(request.headers.get("content-type")):
            # FastAPI decodes a body as JSON only when it is declared JSON (or undeclared):
            # any other type reaches validation as bytes, which fails (500 upstream).
            raise _Refused(_respond(self.store.invalid(InvalidBody("body is not JSON"))))
        try:
            return json.loads(raw)
        except ValueError:
            raise _Refused(_respond(self.store.invalid(InvalidBody("malformed JSON")))) from None

    def endpoint(
        self,
        scope: str | None,
        handler: Callable[[Request, Any, Principal], Reply],
        *,
        body: bool = False,
        values: Callable[[Any, Reply], int] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if self.cost is None:
                return await serve_one(request)
            if not self.cost.admits():
                return JSONResponse("Too many requests: try again later", status_code=429)
            async with self.cost.turn():
                return await serve_one(request)

        async def serve_one(request: Request) -> Response:
            try:
                payload = await self.body(request) if body else None
            except _Refused as refused:
                return refused.response
            principal = Principal(frozenset(), frozenset())
            if scope is not None:
                caller = self.authority.principal(request.headers.get("authorization"))
                if isinstance(caller, Reply):
                    return _respond(caller)
                if scope not in caller.scopes:
                    return JSONResponse(
                        f"Invalid token: Required permissions ['{scope}'] not present",
                        status_code=401,
                    )
                principal = caller
            reply = await run_in_threadpool(handler, request, payload, principal)
            if self.cost is not None:
                await self.cost.charge(values(payload, reply) if values else 0)
            return _respond(reply)

        return run

    # -- handlers -------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        s = self.store
        routes = [
            Route("/v1/heartbeat", self.endpoint(None, lambda r, b, p: self.heartbeat())),
            Route("/v1/setup", self.endpoint(None, lambda r, b, p: s.get_setup())),
            Route("/v1/setup", self.endpoint(ADMIN, lambda r, b, p: s.post_setup(b),
                                             body=True), methods=["POST"]),
            Route("/v1/setup", self.endpoint(ADMIN, lambda r, b, p: s.patch_setup(b),
                                             body=True), methods=["PATCH"]),
            Route("/v1/setup", self.endpoint(ADMIN, lambda r, b, p: s.delete_setup()),
                  methods=["DELETE"]),
            Route("/v1/data", self.endpoint(WRITE_DATA, self.post_data, body=True,
                                            values=_written_values), methods=["POST"]),
            Route("/v1/data", self.endpoint(WRITE_DATA, self.patch_data, body=True,
                                            values=_written_values), methods=["PATCH"]),
            Route("/v1/data", self.endpoint(WRITE_DATA, lambda r, b, p: s.delete_dataset(b),
                                            body=True), methods=["DELETE"]),
            Route("/v1/scope_mapping", self.endpoint(WRITE_DATA, self.post_mapping,
                                                     body=True), methods=["POST"]),
            Route("/v1/scope_mapping", self.endpoint(WRITE_DATA, self.delete_mapping,
                                                     body=True), methods=["DELETE"]),
            Route("/v1/query", self.endpoint(READ_FREE_DATA, lambda r, b, p: s.query(b, p),
                                             body=True, values=_read_values),
                  methods=["POST"]),
            Route("/v1/csv", self.endpoint(READ_FREE_DATA, lambda r, b, p: s.csv(b, p),
                                           body=True), methods=["POST"]),
            Route("/v1/timerange/{category_id}/{indicator_id}/{srid:int}/{trid:int}",
                  self.endpoint(READ_FREE_DATA, self.timerange)),
            Route("/v1/latest_date", self.endpoint(None, lambda r, b, p: s.latest_date())),
            Route("/v1/data_providers", self.endpoint(None, self.data_providers)),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/.well-known/jwks.json", self.jwks),
        ]  # fmt: skip
        for kind in EntityKind:
            routes += self.entity_routes(kind)
        return routes

    def entity_routes(self, kind: EntityKind) -> list[Route]:
        s = self.store
        path = f"/v1/{kind.value}"
        item = f"{path}/{{key}}"
        update_scope = entity_write_scope(kind, update=True)

        def key(request: Request) -> Any:
            raw = request.path_params["key"]
            if kind in (EntityKind.CATEGORY, EntityKind.INDICATOR):
                return raw
            return int(raw) if raw.isdigit() else raw

        routes = [
            Route(path, self.endpoint(ADMIN, lambda r, b, p: s.post_entity(kind, b),
                                      body=True), methods=["POST"]),
            Route(item, self.endpoint(update_scope,
                                      lambda r, b, p: s.patch_entity(kind, key(r), b),
                                      body=True), methods=["PATCH"]),
            Route(item, self.endpoint(ADMIN, lambda r, b, p: s.delete_entity(kind, key(r))),
                  methods=["DELETE"]),
        ]  # fmt: skip
        if kind in self.store.VISIBLE_BY:
            routes += [
                Route(path, self.endpoint(READ_FREE_DATA,
                                          lambda r, b, p: s.list_entities(kind, p))),
                Route(item, self.endpoint(READ_FREE_DATA,
                                          lambda r, b, p: s.get_entity(kind, key(r), p))),
            ]  # fmt: skip
        if kind in (EntityKind.INDICATOR, EntityKind.SPATIAL_RESOLUTION,
                    EntityKind.TEMPORAL_RESOLUTION):  # fmt: skip
            routes.append(
                Route(f"/v1/{kind.value}_for_category/{{category_id}}",
                      self.endpoint(READ_FREE_DATA, lambda r, b, p: s.for_category(
                          kind, r.path_params["category_id"], p)))
            )  # fmt: skip
        return routes

    def heartbeat(self) -> Reply:
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        return Reply(200, {"datetime": now, "python_version": "flowkit-loader serve",
                           "config": {"api_version": API_VERSION,
                                      "api_version_url_appendix": "/v1"}})  # fmt: skip

    def data_providers(self, request: Request, body: Any, principal: Principal) -> Reply:
        return Reply(200, {"data_providers": self.store.get_setup().body["data_providers"]})

    def post_data(self, request: Request, body: Any, principal: Principal) -> Reply:
        return self._write_data(body, replace=False)

    def patch_data(self, request: Request, body: Any, principal: Principal) -> Reply:
        return self._write_data(body, replace=True)

    def _write_data(self, body: Any, *, replace: bool) -> Reply:
        try:
            incoming = self.store.parse_dataset(body)
        except InvalidBody as error:
            return self.store.invalid(error)
        return self.store.write_dataset(incoming, replace=replace)

    def _mapping(self, body: Any) -> tuple[str, int] | Reply:
        if body is None:
            return Reply(400, "Scope mapping None is invalid")
        try:
            return self.store.parse_mapping(body)
        except InvalidBody as error:
            return self.store.invalid(error)

    def post_mapping(self, request: Request, body: Any, principal: Principal) -> Reply:
        parsed = self._mapping(body)
        return parsed if isinstance(parsed, Reply) else self.store.post_mapping(*parsed)

    def delete_mapping(self, request: Request, body: Any, principal: Principal) -> Reply:
        parsed = self._mapping(body)
        return parsed if isinstance(parsed, Reply) else self.store.delete_mapping(*parsed)

    def timerange(self, request: Request, body: Any, principal: Principal) -> Reply:
        p = request.path_params
        return self.store.timerange(
            p["category_id"], p["indicator_id"], p["srid"], p["trid"], principal
        )

    async def token(self, request: Request) -> Response:
        try:
            body = json.loads(await read_body(request, self.max_body, gzipped=False) or b"null")
        except _Refused as refused:
            return refused.response
        except ValueError:
            body = None
        status, answer = self.authority.token_reply(body)
        return JSONResponse(answer, status_code=status)

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.authority.jwks())


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON: when there is none, or
    for application/json and application/*+json."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _http_error(request: Request, error: Exception) -> Response:
    """Unknown routes and methods answer as FastAPI does: JSON `{"detail": ...}`."""
    assert isinstance(error, HTTPException)
    return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                        headers=error.headers)  # fmt: skip


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for the gzip format


def _too_large(limit: int, gzipped: bool) -> _Refused:
    after = " once decompressed" if gzipped else ""
    return _Refused(JSONResponse(
        {"detail": f"Request body too large: more than {limit} bytes{after} "
                   "(serve --max-body-bytes)"},
        status_code=413,
    ))  # fmt: skip


async def read_body(request: Request, limit: int, *, gzipped: bool) -> bytearray:
    """The request's body, gunzipped when `gzipped`, as it streams in: never more than
    `limit` bytes of it are held (a gzip bomb stops at the bound, not in memory), and a
    body past the bound is refused with 413. A damaged gzip stream answers 400, as
    upstream (FastAPI) does."""
    declared = request.headers.get("content-length", "")
    if not gzipped and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, gzipped)  # refused before a byte of it is read
    body = bytearray()
    inflater = zlib.decompressobj(_GZIP)
    compressed = False  # whether any compressed byte came (an empty body is no stream)
    try:
        async for chunk in request.stream():
            if not gzipped:
                if len(body) + len(chunk) > limit:
                    raise _too_large(limit, gzipped)
                body += chunk
                continue
            compressed = compressed or bool(chunk)
            data = chunk
            while data:
                # At most one byte past the bound comes out, whatever the ratio.
                body += inflater.decompress(data, limit - len(body) + 1)
                if len(body) > limit:
                    raise _too_large(limit, gzipped)
                if inflater.eof:  # a member ended: what follows is the next member
                    data = inflater.unused_data
                    if data:
                        inflater = zlib.decompressobj(_GZIP)
                else:
                    data = inflater.unconsumed_tail
        if compressed and not inflater.eof:
            raise zlib.error("truncated gzip stream")
    except zlib.error:
        raise _Refused(JSONResponse({"detail": "There was an error parsing the body"},
                                    status_code=400)) from None  # fmt: skip
    return body


def _written_values(body: Any, reply: Reply) -> int:
    """Values a write stores (none when it was refused or the identity existed)."""
    if reply.status != 201:
        return 0
    inputs = body.get("data_input") if isinstance(body, Mapping) else None
    return len(inputs) if isinstance(inputs, list) else 0


def _read_values(body: Any, reply: Reply) -> int:
    answer = reply.body
    if not isinstance(answer, Mapping) or not isinstance(answer.get("data_by_date"), Mapping):
        return 0
    count = 0
    for cells in answer["data_by_date"].values():
        for value in cells.values():
            count += len(value) if isinstance(value, Mapping) else 1
    return count


def create_app(
    store: Store,
    authority: Authority | None = None,
    cost: CostModel | None = None,
    *,
    max_body: int = MAX_BODY_BYTES,
) -> Starlette:
    api = Api(store, authority or Authority(), cost, max_body)
    return Starlette(
        routes=api.routes(),
        middleware=[Middleware(GZipMiddleware, minimum_size=500)],
        exception_handlers={HTTPException: _http_error},
    )


def serve(
    db: str,
    host: str,
    port: int,
    *,
    quirks: bool,
    cost: CostModel | None,
    audience: str,
    announce: Callable[[str], None],
    max_body: int = MAX_BODY_BYTES,
) -> None:
    """Run the server until interrupted. What a user can get wrong (a database that is not
    one, a folder that cannot be made, a port in use) is a LoaderError, one line."""
    import uvicorn

    if not is_loopback(host):
        announce(
            f"warning: --host {host} is not a loopback address: anyone who can reach it "
            f"can call this API (and, with {SECRET_ENV} set, obtain admin tokens)"
        )
    # Bound here, not by uvicorn: its bind failure is a log line and a sys.exit from
    # inside the event loop, where this one says what to do. First: a port in use then
    # leaves no database behind.
    listener = listen(host, port)
    try:
        store = open_store(db, quirks=quirks)
    except LoaderError:
        listener.close()
        raise
    authority = Authority(audience=audience)
    app = create_app(store, authority, cost, max_body=max_body)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.05)
        bound = listener.getsockname()[1]
        base = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
        announce(f"serving {db} on {base}/v1 (bound to {host})")
        announce(f"token URL: {base}/oauth/token  audience: {audience}")
        ready = [
            c.client_id for c in authority.clients if client_secret(c.client_id, authority.environ)
        ]
        if ADMIN_CLIENT in ready:
            variable = secret_variable(ADMIN_CLIENT, authority.environ)
            for line in manifest_target(base, audience, variable):
                announce(line)
        if ready:
            announce("development clients: " + ", ".join(ready))
        elif authority.environ.get(SECRET_ENV) == "":
            announce(f"development clients: none ({SECRET_ENV} is empty, and an empty secret "
                     "is no secret: set it to enable them)")  # fmt: skip
        else:
            announce(f"development clients: none (set {SECRET_ENV} to enable them)")
        if quirks:
            announce("upstream quirks on: the server reproduces the real service's hazards")
        await task

    asyncio.run(run())


def manifest_target(base: str, audience: str, variable: str) -> list[str]:
    """A target for this server, ready to paste under a manifest's `targets:`: its real
    port, its token URL and audience, the admin client with its secret left to the
    environment (never printed)."""
    return [
        "a manifest target for this server (under `targets:`; the secret stays in the "
        "environment):",
        "  served:",
        f"    url: {base}/v1",
        f"    auth: {{token_url: '{base}/oauth/token', audience: '{audience}'}}",
        "    credentials:",
        f"      all: {{client_id: {ADMIN_CLIENT}, client_secret: '${{{variable}}}'}}",
    ]


def open_store(db: str, *, quirks: bool) -> Store:
    """The store in the SQLite file `db`, created with its folder when absent; anything
    else there (a folder, another kind of file, a path through a file) is one line."""
    where = Path(db)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # A file where a folder must be; mkdir names neither it nor the reason well.
        blocking = next(p for p in where.parents if p.exists())
        raise LoaderError(f"--db {db}: cannot create it: {blocking} is not a directory") from None
    except OSError as error:
        raise LoaderError(f"--db {db}: cannot create it: {error.strerror or error}") from None
    if where.is_dir():
        raise LoaderError(f"--db {db}: a directory, not a database file")
    try:
        with open(where, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        header = b""  # a new database
    except OSError as error:
        raise LoaderError(f"--db {db}: cannot read it: {error.strerror or error}") from None
    if header and header != SQLITE_HEADER:
        raise LoaderError(
            f"--db {db}: not a SQLite database: give the path of a serve database, or a new one"
        )
    try:
        return Store(db, quirks=quirks)
    except sqlite3.Error as error:
        raise LoaderError(f"--db {db}: cannot open it: {error}") from None


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine's loopback addresses."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False  # unknown: listening fails and says so
    return bool(found) and all(ipaddress.ip_address(f[4][0]).is_loopback for f in found)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` (0: a free port), or a LoaderError saying why not."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise LoaderError(
            f"--host {host}: not an address to listen on: {error.strerror or error}"
        ) from None
    family, kind, protocol, _, address = found[0]
    listener = socket.socket(family, kind, protocol)
    try:
        # As uvicorn does: a port whose last connections are in TIME_WAIT is free again,
        # one that a running server holds is not.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        hint = (
            ": another process holds it (stop it, or choose another --port; 0 picks a free one)"
            if error.errno == errno.EADDRINUSE
            else ""
        )
        raise LoaderError(
            f"cannot listen on {host}:{port}: {error.strerror or error}{hint}"
        ) from None
    return listener
