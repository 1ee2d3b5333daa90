"""The remote client under faults, through a fault-injecting transport in front of a real
`flowkit-loader serve` on loopback: each fault with its expected final state.

The transport forwards every request to the server (or not), and records each dataset
write from the moment it is sent until its answer (or failure) comes back, so that the
test can assert that at most one write per dataset identity was ever in flight."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from loader.backends.auth import Token, TokenProvider
from loader.backends.remote import RemoteBackend, UnknownOutcome
from loader.model import BackendError, Dataset, EntityKind, QueryRange, Role
from tests.helpers import example
from tests.serving import SECRET, SECRET_ENV, credential, remote_backend, serving

DATE_FORMATS = {2: "%Y-%m", 4: "%Y-%m-%d"}
Fault = Callable[[httpx.Request, int], str | None]  # (request, nth of its kind) -> action


@dataclass
class FaultyTransport(httpx.BaseTransport):
    """Forwards to the real server, injecting what `fault` says for each request:
    None (pass), 'refuse' (connection error before sending), 'reset' (sent, then the
    connection drops), 'timeout' (sent, answer too late), or an HTTP status to answer
    instead ('429', '503', '500-after' = forward then answer 500, '504-after' the same
    with a gateway's 504)."""

    fault: Fault
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    seen: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = f"{request.method} {request.url.path}"
        with self.lock:
            self.seen[kind] = self.seen.get(kind, 0) + 1
            nth = self.seen[kind]
        action = self.fault(request, nth)
        if action == "refuse":
            raise httpx.ConnectError("injected: connection refused", request=request)
        if action in {"429", "503"}:
            return httpx.Response(int(action), json="injected", request=request)
        identity = self.identity(request)
        if identity:
            with self.lock:
                self.writes.append(identity)
                self.in_flight[identity] = self.in_flight.get(identity, 0) + 1
                self.max_in_flight[identity] = max(
                    self.max_in_flight.get(identity, 0), self.in_flight[identity]
                )
        try:
            request.read()
            response = self.inner.handle_request(request)
            response.read()
        finally:
            if identity:
                with self.lock:
                    self.in_flight[identity] -= 1
        if action == "reset":
            raise httpx.RemoteProtocolError("injected: connection reset", request=request)
        if action == "timeout":
            raise httpx.ReadTimeout("injected: read timeout", request=request)
        if action == "500-after":
            return httpx.Response(500, text="Internal Server Error", request=request)
        if action == "504-after":  # a gateway gave up while the service wrote
            return httpx.Response(504, text="Gateway Timeout", request=request)
        return response

    @staticmethod
    def identity(request: httpx.Request) -> str | None:
        if request.url.path != "/v1/data" or request.method not in {"POST", "PATCH"}:
            return None
        import gzip

        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        meta = json.loads(raw)["metadata"]
        return "|".join(str(meta[k]) for k in ("indicator_id", "srid", "trid", "dt"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path / "serve.db", "--upstream-quirks") as base:
        yield base


def client(base: str, transport: httpx.BaseTransport, **options: object) -> RemoteBackend:
    environ = {SECRET_ENV: SECRET}
    tokens = {role: TokenProvider(credential(base, "dev-admin"), environ=environ)
              for role in Role}  # fmt: skip
    settings: dict[str, object] = {"date_formats": DATE_FORMATS, "backoff": 0.01,
                                   "existence_delay": 0.3, **options}  # fmt: skip
    return remote_backend(f"{base}/v1", tokens, transport=transport, **settings)


def load(backend: RemoteBackend, datasets: list[Dataset], parallelism: int = 4) -> list[int]:
    with ThreadPoolExecutor(parallelism) as pool:
        return [w.mdid for w in pool.map(backend.create_dataset, datasets)]


def assert_exactly_once(backend: RemoteBackend, datasets: list[Dataset]) -> None:
    """Every dataset present once, no duplicate identity."""
    for dataset in datasets:
        found = backend.visible_mdids(backend.exact_range(dataset.key))
        assert len(found) == 1, (dataset.key, found)


def setup(base: str) -> tuple[RemoteBackend, list[Dataset]]:
    config, datasets = example()
    plain = client(base, httpx.HTTPTransport())
    plain.replace_setup(config)
    return plain, datasets[:12]


def only(kind: str, action: str, times: int = 10**9) -> Fault:
    def fault(request: httpx.Request, nth: int) -> str | None:
        matches = f"{request.method} {request.url.path}" == kind
        return action if matches and nth <= times else None

    return fault


def test_storms_of_429_and_503_are_ridden_out(server: str) -> None:
    plain, datasets = setup(server)
    storm = FaultyTransport(lambda r, n: ("429" if n % 2 else "503") if n <= 8 else None)
    backend = client(server, storm, retries=10)
    load(backend, datasets)
    assert_exactly_once(plain, datasets)
    assert max(storm.max_in_flight.values()) == 1


def test_a_reset_before_the_request_was_sent_is_retried(server: str) -> None:
    plain, datasets = setup(server)
    refused = FaultyTransport(only("POST /v1/data", "refuse", times=3))
    load(client(server, refused), datasets)
    assert_exactly_once(plain, datasets)


def test_a_reset_after_the_server_wrote_is_resolved_by_reading(server: str) -> None:
    plain, datasets = setup(server)
    reset = FaultyTransport(only("POST /v1/data", "reset", times=4))
    backend = client(server, reset)
    mdids = load(backend, datasets)
    assert len(set(mdids)) == len(datasets)
    assert_exactly_once(plain, datasets)
    assert max(reset.max_in_flight.values()) == 1
    # The reset writes had landed: nothing was sent twice.
    assert len(reset.writes) == len(datasets)


def test_a_500_after_a_successful_create_is_not_blindly_retried(server: str) -> None:
    plain, datasets = setup(server)
    faulty = FaultyTransport(only("POST /v1/data", "500-after", times=3))
    load(client(server, faulty), datasets)
    assert_exactly_once(plain, datasets)
    assert len(faulty.writes) == len(datasets)


def test_a_write_that_never_landed_is_sent_again_after_two_absent_reads(server: str) -> None:
    plain, datasets = setup(server)

    # Refused before sending counts as "not sent": retried at once; a 500 answered
    # without forwarding is an unknown outcome whose reads find nothing: sent again.
    def fault(request: httpx.Request, nth: int) -> str | None:
        if f"{request.method} {request.url.path}" == "POST /v1/data" and nth == 1:
            return "500-without"
        return None

    class NotForwarded(FaultyTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.fault(request, 1 + self.seen.get("first", 0)) == "500-without":
                self.seen["first"] = 1
                return httpx.Response(500, text="Internal Server Error", request=request)
            return super().handle_request(request)

    transport = NotForwarded(fault)
    load(client(server, transport), datasets[:1], parallelism=1)
    assert_exactly_once(plain, datasets[:1])


def test_a_slow_server_hitting_the_timeout_on_a_write(server: str) -> None:
    plain, datasets = setup(server)
    slow = FaultyTransport(only("POST /v1/data", "timeout", times=2))
    load(client(server, slow), datasets)
    assert_exactly_once(plain, datasets)
    assert max(slow.max_in_flight.values()) == 1


def test_a_500_after_a_temporal_resolution_create_is_resolved(server: str) -> None:
    plain, _ = setup(server)
    month = {"trid": 9, "label": "Fortnight", "index": 5, "relativedelta_unit": "weeks",
             "relativedelta_num": 2, "date_format": "%Y-%m-%d", "default_selected": 3}  # fmt: skip
    write = plain.create_entity(EntityKind.TEMPORAL_RESOLUTION, month)  # quirk: 500 then 303
    assert write.stored["label"] == "Fortnight"


def test_a_token_expiring_mid_run_is_renewed(server: str) -> None:
    plain, datasets = setup(server)
    now = [time.time()]
    obtained: list[float] = []

    class Counting(TokenProvider):
        def _obtain(self) -> Token:
            obtained.append(now[0])
            return super()._obtain()

    provider = Counting(credential(server, "dev-admin"), environ={SECRET_ENV: SECRET},
                        clock=lambda: now[0])  # fmt: skip
    backend = RemoteBackend(f"{server}/v1", dict.fromkeys(Role, provider),
                            date_formats=DATE_FORMATS)  # fmt: skip
    backend.create_dataset(datasets[0])
    backend.create_dataset(datasets[1])
    assert len(obtained) == 1  # reused within the run
    now[0] += 3600 - 30  # within a minute of `exp`: renewed before use, not after a 401
    backend.create_dataset(datasets[2])
    assert len(obtained) == 2
    assert_exactly_once(plain, datasets[:3])


def test_a_write_with_unknown_outcome_is_never_repeated_blindly(server: str) -> None:
    _, datasets = setup(server)
    always = FaultyTransport(only("PATCH /v1/data", "reset"))
    backend = client(server, always, existence_delay=0.01)
    with pytest.raises(UnknownOutcome):
        backend.update_dataset(datasets[0])
    assert len(always.writes) == 3  # sent, then re-sent only after a pause, three at most


def test_errors_name_the_call_status_and_text(server: str) -> None:
    backend = client(server, httpx.HTTPTransport())
    query = QueryRange("nope", "nope.x", 1, 1, "2020-13", 1)
    with pytest.raises(BackendError, match=r"^POST /query: 500 Internal Server Error$"):
        backend.visible_mdids(query)


def test_an_identity_with_several_mdids_stops_with_a_message_for_an_operator(
    server: str,
) -> None:
    plain, datasets = setup(server)
    from loader.backends.remote import AMBIGUOUS, dataset_body

    token = plain.tokens[Role.UPDATER].current().value
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    # Another client (the notebook) races five creates of one identity past upstream's
    # existence check: duplicates that only an operator can remove.
    def post(body: bytes) -> httpx.Response:
        return httpx.post(f"{server}/v1/data", content=body, headers=headers, timeout=30)

    for dataset in datasets:
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(post, [dataset_body(dataset)] * 5))
        if len(plain.visible_mdids(plain.exact_range(dataset.key))) > 1:
            break
    else:
        pytest.fail("the race never produced duplicates")
    with pytest.raises(BackendError, match="Ambiguous dataset: the identity exists more"):
        plain.update_dataset(dataset)
    with pytest.raises(BackendError) as stopped:
        plain.create_dataset(dataset)
    assert AMBIGUOUS in str(stopped.value)


def test_a_gateway_timeout_on_a_dataset_write_is_an_unknown_outcome(server: str) -> None:
    """A 504 on a write says the gateway stopped waiting, not that the service did: a
    create is resolved by reading (never sent twice), a PATCH is sent again only once the
    identity's mdids stopped changing; never two writes of one identity at once."""
    plain, datasets = setup(server)
    faulty = FaultyTransport(only("POST /v1/data", "504-after", times=3))
    load(client(server, faulty), datasets)
    assert_exactly_once(plain, datasets)
    assert len(faulty.writes) == len(datasets)
    patching = FaultyTransport(only("PATCH /v1/data", "504-after", times=2))
    backend = client(server, patching)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(backend.update_dataset, datasets[:4]))
    assert_exactly_once(plain, datasets)
    assert max(patching.max_in_flight.values()) == 1
    assert len(patching.writes) == 4 + 2  # the two 504s sent again, after settling
