"""The real FlowKit-UI backend over HTTP: the Backend protocol over the service's REST
contract (`reference/backend-contract.md`), hazards included. httpx lives here.

- Requests: JSON bodies, gzip when large, pooled connections, timeouts; retries with
  exponential backoff and jitter on connection errors before the request was sent and on
  502 and 504; a 429 or 503 (refused before anything was done) is sent again for as long
  as `overload_patience` allows, however many times. A TLS failure is not retried: it
  stays until someone changes something. A connection error names the URL and its
  cause (`transport.py`).
- A 500, a timeout or a reset on a write is an unknown outcome (Hazards 3, 5, 7), never
  blindly repeated: a config create is posted again and must answer 303 with the stored
  object; a dataset create is sent again only after two existence checks some seconds
  apart agree it is absent. Idempotent writes (updates, deletes, grants) are repeated.
- Errors name the call, the status and the server's text; a 401 names the missing scope.
- Each role (admin for config, updater for data and grants, reader for reads) has its
  own token; a token's scopes are checked before the first call that needs them. A 401
  other than a missing scope renews the token (once per token value, see auth.py) and
  sends the request once more: a 401 is answered before anything is written.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx

from loader.backends.auth import Token, TokenProvider
from loader.backends.pacing import AdaptiveLimit, Answer
from loader.backends.transport import describe, is_permanent, tls_context_for
from loader.contract import (
    ADMIN,
    BACKEND_DT_FORMAT,
    CSV_CATEGORIES,
    KNOWN_API_VERSIONS,
    READ_FREE_DATA,
    ROLE_SCOPES,
    WRITE_DATA,
    entity_write_scope,
    role_for,
)
from loader.model import (
    Backend,
    BackendError,
    Content,
    Dataset,
    DatasetKey,
    DatasetSummary,
    DatasetWrite,
    EntityKind,
    EntityWrite,
    ExactRow,
    Identity,
    LoaderError,
    QueryRange,
    Role,
    ScopeError,
    SetupView,
    content_of,
    exact_rows,
    metadata_of,
    nanos_to_text,
    stored_matches,
)

RETRY_STATUSES = {429, 502, 503, 504}
OVERLOADED = {429, 503}  # the server asks for less (the adaptive limit backs off)
MAX_PAUSE = 10.0  # seconds between two attempts at most, unless the server asks for more
GATEWAY_TIMEOUTS = {502, 504}  # on a write: an unknown outcome, not a refusal
SETTLE_ROUNDS = 10  # reads of a dataset's existence before giving up on it settling
GZIP_ABOVE = 1024  # bytes of JSON body
# A 401 that names a missing scope: a renewed token would carry the same scopes.
MISSING_SCOPE = "Required permissions"


class Unanswered(BackendError):
    """No usable answer (a connection error, a timeout, a service not ready in time):
    status 0, and the message says why and names the URL in place of a status."""

    def __init__(self, call: str, text: str) -> None:
        super().__init__(call, 0, text)
        self.args = (f"{call}: {text}",)


class UnknownOutcome(BackendError):
    """A write whose effect is unknown (500, timeout, reset): resolved by reading."""

    def __init__(self, call: str, status: int, text: str) -> None:
        super().__init__(call, status, text)
        if status == 0:  # no answer: the text names the URL and the cause
            self.args = (f"{call}: {text}",)


def dataset_body(dataset: Dataset) -> bytes:
    """The JSON of a dataset with each value written as its canonical decimal text, so
    that the server stores exactly what was hashed (a float could lose digits)."""
    summary = dataset.summary
    head = json.dumps(
        {
            "metadata": metadata_of(summary.key, summary.revision),
            "data_type": summary.data_type,
        }
    )
    quoted: dict[str, str] = {}

    def q(unit: str) -> str:
        found = quoted.get(unit)
        if found is None:
            found = quoted[unit] = json.dumps(unit)
        return found

    columns = dataset.unit_columns
    texts = map(nanos_to_text, dataset.values)
    if len(columns) == 1:
        cells = [
            f'{{"spatial_unit_ids":[{q(u)}],"data":{v}}}'
            for u, v in zip(columns[0], texts, strict=True)
        ]
    else:
        cells = [
            f'{{"spatial_unit_ids":[{q(o)},{q(d)}],"data":{v}}}'
            for o, d, v in zip(columns[0], columns[1], texts, strict=True)
        ]
    return (head[:-1] + ',"data_input":[' + ",".join(cells) + "]}").encode()


@dataclass(frozen=True)
class RequestSettings:
    """How a client sends: the CA bundle that adds a private CA to the public roots, the
    timeout per request, the connections kept, retries and their backoff, how long to wait
    before reading whether a write took effect, the adaptive limit on requests in flight
    (`--parallelism auto`; without one, the callers' threads are the limit), and (for
    tests) the transport and sleep."""

    ca_bundle: str | None = None
    timeout: float = 120.0
    parallelism: int = 8
    retries: int = 6
    backoff: float = 0.5
    overload_patience: float = 300.0  # seconds of pauses a request may spend on 429 / 503
    existence_delay: float = 3.0
    pacing: AdaptiveLimit | None = None
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep


class RemoteBackend(Backend):
    """A FlowKit-UI backend at `base_url` (`https://host/v1`); `tokens` per role, and
    `scope_tokens` per scope whose readers check grants (`credentials.scopes`)."""

    def __init__(
        self,
        base_url: str,
        tokens: Mapping[Role, TokenProvider],
        *,
        scope_tokens: Mapping[str, TokenProvider] | None = None,
        date_formats: Mapping[int, str] | None = None,
        settings: RequestSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = httpx.URL(self.base_url).path  # /v1: calls are named without it
        self.tokens = tokens
        self.scope_tokens = dict(scope_tokens or {})
        self._readers: dict[str, RemoteBackend] = {}
        self.date_formats = dict(date_formats or {})
        self.settings = settings = settings or RequestSettings()
        timeout = settings.timeout
        connections = settings.parallelism
        self.http = httpx.Client(
            # TLS verification is never off; a CA bundle adds a private CA to the public
            # roots (the token endpoint trusts the same, see auth.py).
            verify=tls_context_for(self.base_url, settings.ca_bundle),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False,  # 303 means "exists", not "go there"
            transport=settings.transport,
        )
        self._checked: set[tuple[Role, str]] = set()
        self._identity_locks: dict[DatasetKey, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def close(self) -> None:
        try:
            for reader in self._readers.values():
                reader.close()
        finally:
            self.http.close()

    # -- who calls --------------------------------------------------------------------------

    def identities(self, roles: Iterable[Role]) -> dict[Role, Identity | LoaderError]:
        # One credential for several roles is one provider: its token is asked for once,
        # and a request that failed is not sent again for the next role.
        asked: dict[int, Identity | LoaderError] = {}
        found: dict[Role, Identity | LoaderError] = {}
        for role in roles:
            provider = self.tokens.get(role)
            if provider is None:
                continue
            if id(provider) not in asked:
                try:
                    token = provider.current()
                    asked[id(provider)] = Identity(token.subject, token.scopes, token.permissions)
                except LoaderError as error:
                    asked[id(provider)] = error
            found[role] = asked[id(provider)]
        return found

    def acting_as(self, roles: Iterable[Role]) -> str:
        subjects = [i.subject for i in self.identities(roles).values() if isinstance(i, Identity)]
        return ", ".join(dict.fromkeys(subjects)) or "unknown"

    def reader(self, scope: str) -> RemoteBackend | None:
        provider = self.scope_tokens.get(scope)
        if provider is None:
            return None
        if scope not in self._readers:
            # The same way to the server; a reader's few requests need no more connections.
            settings = replace(self.settings, parallelism=RequestSettings.parallelism)
            self._readers[scope] = RemoteBackend(
                self.base_url, {Role.READER: provider}, date_formats=self.date_formats,
                settings=settings,
            )  # fmt: skip
        return self._readers[scope]

    def __repr__(self) -> str:
        return f"RemoteBackend({self.base_url!r})"

    # -- plumbing -------------------------------------------------------------------------

    def token(self, role: Role, scope: str, call: str) -> Token:
        """The role's token, checked once for the scope the call needs."""
        provider = self.tokens.get(role)
        if provider is None:
            raise ScopeError(call, 401, f"no credential for the {role.value} role")
        token = provider.current()
        if (role, scope) not in self._checked:
            if scope not in token.scopes:
                raise ScopeError(
                    call,
                    401,
                    f"the {role.value} credential's token lacks the '{scope}' scope "
                    f"(it has: {', '.join(sorted(token.scopes)) or 'none'})",
                )
            self._checked.add((role, scope))
        return token

    def preflight(self, roles: Iterable[Role]) -> None:
        """Check, before anything is written, that each role's token carries the scopes the
        run will need; a missing one fails at once, naming it."""
        for role in roles:
            for scope in ROLE_SCOPES[role]:
                self.token(role, scope, f"preflight ({role.value})")

    def request(
        self,
        method: str,
        path: str,
        role: Role | None,
        scope: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        write: bool = False,
    ) -> httpx.Response:
        """One call with retries; a write whose outcome is unknown raises UnknownOutcome.
        A `role` of None sends no token (the calls that need none)."""
        call = f"{method} {path}"
        url = self.base_url + path
        content = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Accept-Encoding": "gzip", "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
            if len(content) > GZIP_ABOVE:
                content = gzip.compress(content, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        kind = f"{call} {len(content or b'').bit_length()}"  # whose latencies compare
        attempt = 0  # transient failures so far, each followed by a pause
        patience = self.settings.overload_patience  # pauses left for 429 / 503
        renewed = False  # sent again with a renewed token after a 401: once, no more
        while True:
            token = None
            if role is not None:
                token = self.token(role, scope, call)
                headers["Authorization"] = f"Bearer {token.value}"
            try:
                response = self._send(method, url, content, headers, kind)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
                # Not sent: safe to try again, unless waiting cannot make it work.
                if attempt == self.settings.retries or is_permanent(error):
                    raise Unanswered(call, self.explain(error, url)) from None
                self.pause(attempt)
                attempt += 1
                continue
            except httpx.TransportError as error:
                # Sent, perhaps processed: a read is repeated, a write is not.
                if write:
                    raise self._unknown(call, 0, self.explain(error, url)) from None
                if attempt == self.settings.retries:
                    raise Unanswered(call, self.explain(error, url)) from None
                self.pause(attempt)
                attempt += 1
                continue
            status = response.status_code
            if status in GATEWAY_TIMEOUTS and write:
                # A gateway gave up waiting; the service behind it may still be writing.
                raise self._unknown(call, status, _text(response))
            if status in OVERLOADED and patience > 0:
                patience -= self.pause(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            if status in RETRY_STATUSES - OVERLOADED and attempt < self.settings.retries:
                self.pause(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            if status == 401:
                text = _text(response)
                if role is None or token is None or MISSING_SCOPE in text:
                    raise ScopeError(call, 401, text)  # a new token has the same scopes
                # Refused before anything was done (a rotated signing key, a restarted
                # issuer, an expired token): renew it, send once more.
                provider = self.tokens[role]
                if renewed or provider.renew(token) is None:
                    raise ScopeError(call, 401, f"{text} ({provider.refusal_hint()})")
                renewed = True
                continue
            if token is not None and role is not None:
                self.tokens[role].accepted(token)
            if status == 500 and write:
                raise self._unknown(call, 500, _text(response))
            return response

    def _send(
        self, method: str, url: str, content: bytes | None, headers: dict[str, str], kind: str
    ) -> httpx.Response:
        """One exchange, within the adaptive limit when there is one (it is told how the
        server took it: a request left by an exception counts as timed out)."""
        pacing = self.settings.pacing
        if pacing is None:
            return self.http.request(method, url, content=content, headers=headers)
        with pacing.slot(kind) as answered:
            response = self.http.request(method, url, content=content, headers=headers)
            answered(_answer(response.status_code))
            return response

    def _unknown(self, call: str, status: int, text: str) -> UnknownOutcome:
        """A write's unknown outcome; the adaptive limit holds until it is resolved."""
        if self.settings.pacing is not None:
            self.settings.pacing.unknown()
        return UnknownOutcome(call, status, text)

    def _write(self) -> contextlib.AbstractContextManager[None]:
        """One write, the resolution of an unknown outcome included."""
        pacing = self.settings.pacing
        return contextlib.nullcontext() if pacing is None else pacing.resolving()

    def explain(self, error: httpx.TransportError, url: str) -> str:
        """A connection failure in one line: the URL, the cause, what to do."""
        return describe(error, url, ca_bundle=self.settings.ca_bundle)

    def pause(self, attempt: int, retry_after: str | None = None) -> float:
        """Exponential backoff with full jitter, each pause at most MAX_PAUSE (or what the
        server asks for, at most a minute); the seconds paused."""
        if retry_after and retry_after.isdigit():
            seconds = min(float(retry_after), 60.0)
        else:
            seconds = random.uniform(0, min(self.settings.backoff * 2**attempt, MAX_PAUSE))
        self.settings.sleep(seconds)
        return seconds

    def expect(self, response: httpx.Response, *statuses: int) -> httpx.Response:
        if response.status_code not in statuses:
            path = response.request.url.path.removeprefix(self.prefix)
            call = f"{response.request.method} {path}"
            raise BackendError(call, response.status_code, _text(response))
        return response

    # -- service checks ---------------------------------------------------------------------

    def wait_ready(self, deadline: float) -> str:
        """Poll /heartbeat until it answers (services that start on first request), then
        check that the API version is one this loader knows. A TLS failure ends the wait at
        once: waiting cannot make a certificate trusted."""
        url = self.base_url + "/heartbeat"
        end = time.monotonic() + deadline
        attempt = 0
        while True:
            try:
                # Each poll is bounded by the client's timeout too (short in tests).
                response = self.http.get(url, timeout=min(10.0, self.settings.timeout))
                if response.status_code == 200:
                    break
                problem = f"{response.status_code} {_text(response)}"
            except httpx.TransportError as error:
                problem = self.explain(error, url)
                if is_permanent(error):
                    raise Unanswered("GET /heartbeat", problem) from None
            if time.monotonic() > end:
                raise Unanswered("GET /heartbeat", f"not ready after {deadline:g} s: {problem}")
            self.settings.sleep(min(0.5 * 2**attempt, 5.0))
            attempt += 1
        version = _api_version(response)
        if version is not None and not version.startswith(KNOWN_API_VERSIONS):
            raise BackendError(
                "GET /heartbeat",
                200,
                f"API version {version} is not one this loader knows "
                f"({', '.join(KNOWN_API_VERSIONS)})",
            )
        return f"{self.base_url} is ready"

    # -- config -----------------------------------------------------------------------------

    def read_setup(self) -> SetupView:
        response = self.expect(self.request("GET", "/setup", None, ""), 200)
        body = response.json()
        return SetupView(tuple(body["languages"]), tuple(body["data_providers"]))

    def replace_setup(self, config: Mapping[str, Any]) -> None:
        """POST /setup with explicit ids; its known 500 is tolerated, then it is checked:
        languages and data providers through GET /setup, every other entity by posting it
        again and expecting 303 with the same object."""
        with self._write():
            self._replace_setup(config)

    def _replace_setup(self, config: Mapping[str, Any]) -> None:
        # Upstream answers 500 even when every row was written (Hazard 1).
        with contextlib.suppress(UnknownOutcome):
            self.expect(self.request("POST", "/setup", Role.ADMIN, ADMIN, config, write=True), 204)
        checks = [
            (kind, entity)
            for kind in (EntityKind.CATEGORY, EntityKind.INDICATOR,
                         EntityKind.SPATIAL_RESOLUTION, EntityKind.TEMPORAL_RESOLUTION)
            for entity in config.get(kind.value, [])
        ]  # fmt: skip

        def check(item: tuple[EntityKind, Mapping[str, Any]]) -> None:
            kind, entity = item
            write = self.create_entity(kind, entity)
            if not stored_matches(entity, write.stored):
                raise BackendError(
                    f"POST /{kind.value}",
                    303,
                    f"{kind.singular} {entity.get(kind.id_field)!r} differs after setup",
                )

        # The checks are reads in effect (each answers 303 with what is stored): all in
        # flight at once, as many as the connection allows, GET /setup among them; the
        # first failure is raised, languages and data providers first, then config order.
        with ThreadPoolExecutor(self.settings.parallelism, thread_name_prefix="setup") as pool:
            viewing = pool.submit(self.read_setup)
            checked = pool.map(check, checks)
            view = viewing.result()
            for kind, stored in ((EntityKind.LANGUAGE, view.languages),
                                 (EntityKind.DATA_PROVIDER, view.data_providers)):  # fmt: skip
                have = {item.get(kind.id_field) for item in stored}
                missing = [e for e in config.get(kind.value, [])
                           if e.get(kind.id_field) not in have]  # fmt: skip
                if missing:
                    raise BackendError("POST /setup", 500, f"{kind.value} missing afterwards: "
                                       f"{[m.get(kind.id_field) for m in missing]}")  # fmt: skip
            for _ in checked:
                pass

    def create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        with self._write():
            return self._create_entity(kind, body)

    def _create_entity(self, kind: EntityKind, body: Mapping[str, Any]) -> EntityWrite:
        path = f"/{kind.value}"
        try:
            response = self.request("POST", path, Role.ADMIN, ADMIN, body, write=True)
        except UnknownOutcome:
            # Created or not (Hazard 3): a create of an existing id answers 303 + object.
            again = self.expect(self.request("POST", path, Role.ADMIN, ADMIN, body,
                                             write=True), 201, 303)  # fmt: skip
            return EntityWrite(True, again.json())
        self.expect(response, 201, 303)
        return EntityWrite(response.status_code == 201, response.json())

    def update_entity(
        self, kind: EntityKind, entity_id: int | str, body: Mapping[str, Any]
    ) -> None:
        scope = entity_write_scope(kind, update=True)
        self._idempotent("PATCH", f"/{kind.value}/{entity_id}", role_for(scope), scope, body, 204)

    def delete_entity(self, kind: EntityKind, entity_id: int | str) -> None:
        self._idempotent("DELETE", f"/{kind.value}/{entity_id}", Role.ADMIN, ADMIN, None, 204)

    def read_entity(self, kind: EntityKind, entity_id: int | str) -> Mapping[str, Any] | None:
        response = self.request("GET", f"/{kind.value}/{entity_id}", Role.READER, READ_FREE_DATA)
        if response.status_code == 404:
            return None
        found: Mapping[str, Any] = self.expect(response, 200).json()
        return found

    def list_entities(self, kind: EntityKind) -> tuple[Mapping[str, Any], ...]:
        response = self.request("GET", f"/{kind.value}", Role.READER, READ_FREE_DATA)
        return tuple(self.expect(response, 200).json()[kind.value])

    def date_range(
        self, category_id: str, indicator_id: str, srid: int, trid: int
    ) -> tuple[str, ...]:
        path = f"/timerange/{category_id}/{indicator_id}/{srid}/{trid}"
        response = self.request("GET", path, Role.READER, READ_FREE_DATA)
        return tuple(self.expect(response, 200).json()["all_dates"] or ())

    def _idempotent(
        self,
        method: str,
        path: str,
        role: Role,
        scope: str,
        body: Any,
        *statuses: int,
        raw: bytes | None = None,
        settle: DatasetKey | None = None,
    ) -> httpx.Response:
        """A write that is safe to send again: after an unknown outcome, wait and resend;
        for a dataset (`settle`), only once its mdids stopped changing, so that the first
        write cannot still be running when the second arrives (Hazard 5)."""
        with self._write():
            for attempt in range(3):
                try:
                    response = self.request(method, path, role, scope, body, raw=raw, write=True)
                    return self.expect(response, *statuses)
                except UnknownOutcome as unknown:
                    if "Ambiguous dataset" in unknown.text:
                        raise BackendError(unknown.call, 500, AMBIGUOUS) from None
                    if attempt == 2:
                        raise
                    if settle is not None:
                        self._settled_mdids(settle)
                    else:
                        self.settings.sleep(self.settings.existence_delay)
            raise AssertionError("unreachable")

    # -- datasets ---------------------------------------------------------------------------

    def identity_lock(self, key: DatasetKey) -> threading.Lock:
        """Never two writes of one dataset identity at once (Hazard 5), whoever calls."""
        with self._locks_lock:
            return self._identity_locks.setdefault(key, threading.Lock())

    def create_dataset(self, dataset: Dataset) -> DatasetWrite:
        with self.identity_lock(dataset.key), self._write():
            return self._create_dataset(dataset)

    def _create_dataset(self, dataset: Dataset) -> DatasetWrite:
        body = dataset_body(dataset)
        for _ in range(2):
            try:
                response = self.request("POST", "/data", Role.UPDATER, WRITE_DATA, raw=body,
                                        write=True)  # fmt: skip
            except UnknownOutcome as unknown:
                if "Ambiguous dataset" in unknown.text:
                    raise _ambiguous(dataset.key) from None
                found = self._settled_mdids(dataset.key)
                if found:
                    if len(found) > 1:
                        raise _ambiguous(dataset.key) from None
                    # Ours, or a 303 whose answer was lost: its content is not known.
                    return DatasetWrite(False, next(iter(found)))
                continue  # absent twice, some seconds apart: send it again
            self.expect(response, 201, 303)
            return DatasetWrite(response.status_code == 201, int(response.json()))
        raise BackendError("POST /data", 500, f"{dataset.key}: no answer after two attempts")

    def update_dataset(self, dataset: Dataset) -> int:
        # PATCH replaces the dataset whole: sending it again after an unknown outcome
        # stores the same content (under yet another mdid), once the first one settled.
        with self.identity_lock(dataset.key):
            response = self._idempotent("PATCH", "/data", Role.UPDATER, WRITE_DATA, None, 201,
                                        raw=dataset_body(dataset), settle=dataset.key)  # fmt: skip
        return int(response.json())

    def delete_dataset(self, summary: DatasetSummary) -> None:
        body: dict[str, Any] = {"metadata": metadata_of(summary.key, summary.revision),
                "data_type": summary.data_type, "data_input": []}  # fmt: skip
        with self.identity_lock(summary.key):
            self._idempotent("DELETE", "/data", Role.UPDATER, WRITE_DATA, body, 204,
                             settle=summary.key)  # fmt: skip

    def _settled_mdids(self, key: DatasetKey) -> frozenset[int]:
        """The identity's mdids once two reads some seconds apart agree (a write in flight
        on the server may still land between them)."""
        query = self.exact_range(key)
        previous = self.visible_mdids(query)
        for _ in range(SETTLE_ROUNDS):
            self.settings.sleep(self.settings.existence_delay)
            current = self.visible_mdids(query)
            if current == previous:
                return current
            previous = current
        raise BackendError("POST /query", 0, f"{key}: its mdids keep changing; another writer?")

    def exact_range(self, key: DatasetKey) -> QueryRange:
        """The /query range that selects exactly one date, in the resolution's format."""
        fmt = self.date_formats.get(key.trid)
        if fmt is None:
            raise BackendError("POST /query", 0, f"no date format known for trid {key.trid}")
        moment = time.strptime(key.dt, BACKEND_DT_FORMAT)
        return QueryRange(key.category_id, key.indicator_id, key.srid, key.trid,
                          time.strftime(fmt, moment), 1)  # fmt: skip

    # -- reads ------------------------------------------------------------------------------

    def _query(self, query: QueryRange, mdids_only: bool) -> Any:
        response = self.request(
            "POST", "/query", Role.READER, READ_FREE_DATA, query.body(mdids_only)
        )
        if response.status_code == 404:
            return None  # nothing visible in the range ("No metadata found", ...)
        return self.expect(response, 200).json()

    def visible_mdids(self, query: QueryRange) -> frozenset[int]:
        answer = self._query(query, mdids_only=True)
        # One string per matching scope mapping: deduplicated here.
        return frozenset() if answer is None else frozenset(int(m) for m in answer["mdids"])

    def dataset_content(self, query: QueryRange) -> Content:
        answer = self._query(query, mdids_only=False)
        return {} if answer is None else content_of(answer["data_by_date"] or {})

    def exact_values(self, query: QueryRange) -> tuple[ExactRow, ...] | None:
        if query.category_id not in CSV_CATEGORIES:
            return None
        response = self.request("POST", "/csv", Role.READER, READ_FREE_DATA, query.body(False))
        return exact_rows(self.expect(response, 200).text)

    # -- grants -----------------------------------------------------------------------------

    def grant(self, scope: str, mdid: int) -> bool:
        response = self._idempotent("POST", "/scope_mapping", Role.UPDATER, WRITE_DATA,
                                    {"scope": scope, "mdid": mdid}, 201, 303)  # fmt: skip
        return response.status_code == 201

    def revoke(self, scope: str, mdid: int) -> None:
        self._idempotent("DELETE", "/scope_mapping", Role.UPDATER, WRITE_DATA,
                         {"scope": scope, "mdid": mdid}, 204)  # fmt: skip


AMBIGUOUS = (
    "Ambiguous dataset: the identity exists more than once on the server; an operator "
    "must remove the duplicates in its database (the API cannot)"
)


def _ambiguous(key: DatasetKey) -> BackendError:
    return BackendError("POST /data", 500, f"{AMBIGUOUS} ({key})")


def _answer(status: int) -> Answer:
    """What an answer tells the adaptive limit: a gateway that gave up is a timeout."""
    if status in OVERLOADED:
        return Answer.OVERLOADED
    return Answer.TIMED_OUT if status in GATEWAY_TIMEOUTS else Answer.ANSWERED


def _text(response: httpx.Response) -> str:
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300]
    return body if isinstance(body, str) else json.dumps(body)[:300]


def _api_version(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, Mapping):
        return None
    config = body.get("config")
    for source in (body, config if isinstance(config, Mapping) else {}):
        version = source.get("api_version")
        if isinstance(version, str):
            return version
    return None
