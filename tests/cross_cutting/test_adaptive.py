"""`--parallelism auto` against a real `serve --capacity N` on loopback: the server answers
429 past its capacity (as many again may wait their turn); the client backs off, never has
more in flight than its ceiling, and still writes everything exactly once. Behaviour is
asserted, not throughput (no timing in tests)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loader.backends.pacing import AdaptiveLimit, Answer
from tests.cross_cutting.test_faults import assert_exactly_once, client
from tests.helpers import cli_run, example
from tests.manifests import example_manifest
from tests.serving import SECRET, SECRET_ENV, serving

# Slow enough that requests overlap on the server whatever the machine's speed.
SLOW = ("--request-cost", "0.05", "--value-cost", "0")


@dataclass
class Counting(httpx.BaseTransport):
    """The real transport, counting the requests in flight at once and the 429s."""

    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    in_flight: int = 0
    most: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            request.read()
            response = self.inner.handle_request(request)
            response.read()
        finally:
            with self.lock:
                self.in_flight -= 1
        if response.status_code == 429:
            with self.lock:
                self.refused += 1
        return response


def test_serve_answers_429_past_twice_its_capacity(tmp_path: Path) -> None:
    def status(base: str) -> int:
        return httpx.get(f"{base}/v1/heartbeat", timeout=60).status_code

    slow = ("--capacity", "1", "--request-cost", "1")
    with serving(tmp_path / "serve.db", *slow) as base, ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(status, [base] * 6))
    # One served, one waiting its turn, the rest refused at once.
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) >= 2


def test_auto_backs_off_on_429_and_never_exceeds_its_ceiling(tmp_path: Path) -> None:
    config, datasets = example()
    with serving(tmp_path / "serve.db", "--capacity", "2", *SLOW) as base:
        client(base, httpx.HTTPTransport()).replace_setup(config)
        counting = Counting()
        pacing = AdaptiveLimit(6, start=6)  # more than the server takes at once
        backend = client(base, counting, pacing=pacing)
        with ThreadPoolExecutor(12) as pool:  # more threads than the ceiling
            list(pool.map(backend.create_dataset, datasets[:40]))
        assert_exactly_once(client(base, httpx.HTTPTransport()), datasets[:40])
    assert counting.refused > 0  # the server did refuse ...
    assert any(step.why == Answer.OVERLOADED.value for step in pacing.steps)  # ... it heard
    assert counting.most <= 6
    assert pacing.peak <= 6
    assert all(step.after <= 6 for step in pacing.steps)


def test_auto_holds_while_an_unknown_outcome_is_resolved(tmp_path: Path) -> None:
    """A 500 after a write that landed (the server's quirk) is resolved by reads before
    the limit may rise: while it is, no step up is taken."""
    config, datasets = example()
    with serving(tmp_path / "serve.db", "--upstream-quirks", "--latency") as base:
        client(base, httpx.HTTPTransport()).replace_setup(config)
        pacing = AdaptiveLimit(8, start=1)
        backend = client(base, _ServerError500(), pacing=pacing, existence_delay=1.0)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(backend.create_dataset, datasets[:40]))
        assert not pacing.holding  # resolved
        # Reads after it: nothing is unknown any more, so the limit may rise again.
        assert_exactly_once(backend, datasets[:40] * 2)
    assert pacing.held, "no judgement was held"
    raised = [s.at for s in pacing.steps if s.after > s.before]
    assert raised, "the limit never rose"  # it would have, were nothing unknown
    assert not [at for at in raised if min(pacing.held) <= at <= max(pacing.held)]


class _ServerError500(httpx.BaseTransport):
    """The real transport; the first dataset write answers 500 after it landed."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.done = False
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.inner.handle_request(request)
        response.read()
        with self.lock:
            first = not self.done and request.method == "POST" and request.url.path == "/v1/data"
            self.done = self.done or first
        if first:
            return httpx.Response(500, text="Internal Server Error", request=request)
        return response


def test_apply_with_parallelism_auto_against_a_server_of_small_capacity(tmp_path: Path) -> None:
    with serving(tmp_path / "serve.db", "--capacity", "2", "--request-cost", "0.01") as base:
        manifest = example_manifest(tmp_path, base)
        env = {SECRET_ENV: SECRET}
        code, output = cli_run("apply", str(manifest), "--yes", "--parallelism", "auto",
                               "--max-parallelism", "8", env=env)  # fmt: skip
        assert code == 0, output
        assert "parallelism auto: " in output and "(ceiling 8)" in output
        assert cli_run("plan", str(manifest), "--detailed-exitcode", env=env)[0] == 0


def test_parallelism_is_a_number_or_auto() -> None:
    for wrong in ("0", "65", "many", "-1"):
        code, output = cli_run("apply", "nowhere.yaml", "--parallelism", wrong)
        assert code == 1
        assert f"'{wrong}' is neither auto nor a number from 1 to 64" in output
