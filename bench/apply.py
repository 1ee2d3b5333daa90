"""How close does flowkit-loader's apply come to the fastest a client can load a deployment?

Against ``flowkit-loader serve --upstream-quirks --latency`` on loopback (the real
service's hazards, and its cost per request and per value: the values of all requests are
written one request at a time, as the real service's single database does), in one
session, each on a fresh database:

* the floor: a bare httpx client that sends exactly the requests apply sends, byte for
  byte as apply sent them in a warm-up apply before the clock starts (the plan's reads,
  POST /setup, the setup's checks, the 149 datasets and 15 grants, the closing existence
  reads), phase by phase at fixed concurrencies of 1, 2, 4 and 8 (a grant names the mdid its
  own dataset write was given); it fetches its token on the clock, as apply does; the best
  concurrency is the floor;
* ours: ``loader.apply`` of the upstream manifest (``tests/data/upstream/manifest.yaml``,
  the same data read in place, the notebook's access rules), timed from the call to its
  return: validation and preparation (no cache), plan, setup and its checks, datasets,
  grants, journal and state record;
* for information, the notebook: a faithful copy of its whole flow
  (``bench/notebook_flow.py``), timed from its token to its last mapping.

Each is run RUNS times, alternately, and the medians are compared. The final databases of
ours and the notebook are compared: the same config, the same datasets (identity,
revision, data type, min, max, every unit and value), the same scope mappings (by dataset
identity; mdids and dates added differ by nature). Prints the requests replayed, the times,
ours / floor (the bar: at most 1.10) and notebook / ours; the exit status is non-zero when
the databases differ or ours is above the bar.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import SERVE_AUDIENCE, SERVE_SECRET_ENV, fail, recording, served_manifest, serving
from notebook_flow import fetch_token, run_notebook_flow, upstream_config

import loader

MAX_RATIO = 1.10  # ours / the floor
RUNS = 3
CONCURRENCIES = (1, 2, 4, 8)
SERVE_OPTIONS = ("--upstream-quirks", "--latency")
SENT_HEADERS = ("content-type", "content-encoding", "accept", "accept-encoding")


@dataclass(frozen=True)
class Sent:
    """One request as apply sent it (its path below /v1), and the mdid it was answered
    with when it wrote a dataset."""

    method: str
    path: str
    headers: dict[str, str]
    content: bytes
    mdid: int | None = None

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Phases:
    """Apply's requests in the order it depends on: what comes before POST /setup (the
    plan's reads), POST /setup, its checks, the dataset writes, the grants, and the reads
    after the last write."""

    reads: list[Sent]
    setup: list[Sent]
    checks: list[Sent]
    datasets: list[Sent]
    grants: list[Sent]
    closing: list[Sent]

    def count(self) -> Counter[str]:
        every = self.reads + self.setup + self.checks + self.datasets + self.grants
        return Counter(sent.call for sent in every + self.closing)


def apply_requests(directory: Path, secret: str) -> Phases:
    """The requests of an apply of the upstream manifest to an empty serve, as sent."""
    own = directory / "warm-up"
    own.mkdir()
    with serving(directory / "warm-up.db", secret, *SERVE_OPTIONS) as base, recording() as seen:
        applied = loader.apply(served_manifest(own, base), environ={SERVE_SECRET_ENV: secret})
    if not applied.result.ok:
        fail(f"the warm-up apply did not complete: {applied.result.counts()}")
    prefix = httpx.URL(base).path
    sent = []
    for request, response in seen:
        path = request.url.raw_path.decode()
        if not path.startswith(prefix + "/"):
            continue  # the token: the floor fetches its own
        mdid = int(response.json()) if path == prefix + "/data" and request.method == "POST" \
            else None  # fmt: skip
        headers = {name: request.headers[name] for name in SENT_HEADERS if name in request.headers}
        sent.append(Sent(request.method, path.removeprefix(prefix), headers, request.content, mdid))
    calls = [s.call for s in sent]
    setup = calls.index("POST /setup")
    first = calls.index("POST /data")
    last = max(i for i, s in enumerate(sent) if s.path in ("/data", "/scope_mapping"))
    writes = sent[first : last + 1]
    phases = Phases(
        reads=sent[:setup],
        setup=[sent[setup]],
        checks=sent[setup + 1 : first],
        datasets=[s for s in writes if s.path == "/data"],
        grants=[s for s in writes if s.path == "/scope_mapping"],
        closing=sent[last + 1 :],
    )
    if len(phases.datasets) + len(phases.grants) != len(writes):
        fail(f"the warm-up apply sent other writes: {Counter(s.call for s in writes)}")
    return phases


def floor(directory: Path, secret: str, phases: Phases, concurrency: int, run: int) -> float:
    """A bare client sending `phases` with `concurrency` requests in flight."""
    with serving(directory / f"floor-{concurrency}-{run}.db", secret, *SERVE_OPTIONS) as base:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        with httpx.Client(base_url=base, limits=limits, timeout=120) as client:

            def send(sent: Sent, content: bytes | None = None) -> httpx.Response:
                body = sent.content if content is None else content
                return client.request(sent.method, sent.path, headers=sent.headers, content=body)

            def post_dataset(sent: Sent) -> tuple[int | None, int]:
                response = send(sent)
                if response.status_code != 201:
                    fail(f"floor: POST /data answered {response.status_code}")
                return sent.mdid, int(response.json())

            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                token = fetch_token(base.removesuffix("/v1") + "/oauth/token", SERVE_AUDIENCE,
                                    "dev-admin", secret)  # fmt: skip
            client.headers["Authorization"] = f"Bearer {token}"
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, phases.reads))
                setup = send(phases.setup[0])
                if setup.status_code not in (204, 500):  # upstream's 500 after a full write
                    fail(f"floor: POST /setup answered {setup.status_code}")
                list(pool.map(send, phases.checks))
                mdids = dict(pool.map(post_dataset, phases.datasets))

                def grant(sent: Sent) -> None:
                    body = json.loads(sent.content)
                    body["mdid"] = mdids[body["mdid"]]  # the mdid of this run's write
                    if send(sent, json.dumps(body).encode()).status_code != 201:
                        fail("floor: POST /scope_mapping did not answer 201")

                list(pool.map(grant, phases.grants))
                list(pool.map(send, phases.closing))
            return time.perf_counter() - start


def notebook(directory: Path, secret: str, run: int) -> float:
    with serving(directory / f"notebook-{run}.db", secret, *SERVE_OPTIONS) as base:
        with contextlib.redirect_stdout(io.StringIO()):  # the notebook prints the response
            token = fetch_token(base.removesuffix("/v1") + "/oauth/token", SERVE_AUDIENCE,
                                "dev-admin", secret)  # fmt: skip
        config = upstream_config()
        start = time.perf_counter()
        result = run_notebook_flow(base, token, config)
        seconds = time.perf_counter() - start
    if result["datasets_posted"] != 149:
        fail(f"the notebook posted {result['datasets_posted']} datasets, not 149")
    return seconds


def ours(directory: Path, secret: str, run: int) -> float:
    own = directory / f"ours-{run}"  # a state record of its own
    own.mkdir()
    with serving(directory / f"ours-{run}.db", secret, *SERVE_OPTIONS) as base:
        manifest = served_manifest(own, base)
        start = time.perf_counter()
        applied = loader.apply(manifest, environ={SERVE_SECRET_ENV: secret})
        seconds = time.perf_counter() - start
    if not applied.result.ok:
        fail(f"our apply did not complete: {applied.result.counts()}")
    return seconds


def contents(db: Path) -> dict[str, Any]:
    """A database's content, without what differs by nature (mdids, row ids, dates)."""
    with sqlite3.connect(db) as connection:
        entities = sorted(
            (kind, key, json.dumps(json.loads(body), sort_keys=True))
            for kind, key, body in connection.execute("SELECT kind, key, body FROM entity")
        )
        datasets = {}
        identity_of = {}
        for row in connection.execute(
            "SELECT m.mdid, m.category_id, m.indicator_id, m.srid, m.trid, m.dt, m.revision, "
            "m.data_type, m.min_value, m.max_value, d.count, d.units, d.destinations, d.nanos "
            "FROM metadata m JOIN data d ON d.row_id = m.id"
        ):
            identity = tuple(row[1:6])
            if identity in datasets:
                fail(f"{db.name}: {identity} stored twice")
            identity_of[row[0]] = identity
            datasets[identity] = row[6:]
        mappings = sorted(
            (scope, identity_of[mdid])
            for scope, mdid in connection.execute("SELECT scope, mdid FROM scope_mapping")
            if mdid in identity_of
        )
    return {"entities": entities, "datasets": datasets, "mappings": mappings}


def main() -> int:
    secret = secrets.token_urlsafe(16)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-apply-") as scratch:
        directory = Path(scratch)
        phases = apply_requests(directory, secret)
        print(
            "requests replayed: " + ", ".join(f"{call} {n}" for call, n in phases.count().items())
        )
        for run in range(RUNS):
            for concurrency in CONCURRENCIES:
                took = floor(directory, secret, phases, concurrency, run)
                times.setdefault(f"floor, {concurrency} in flight", []).append(took)
            times.setdefault("flowkit-loader apply", []).append(ours(directory, secret, run))
            times.setdefault("notebook flow", []).append(notebook(directory, secret, run))
        theirs = contents(directory / "notebook-0.db")
        mine = contents(directory / "ours-0.db")
    for part in ("entities", "datasets", "mappings"):
        if theirs[part] != mine[part]:
            fail(f"the final databases differ in their {part}")
    values = sum(row[4] for row in mine["datasets"].values())
    print(f"final databases identical: {len(mine['entities'])} config entities, "
          f"{len(mine['datasets'])} datasets ({values:,} values), "
          f"{len(mine['mappings'])} scope mappings")  # fmt: skip
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, seconds in medians.items():
        print(f"{name:<28}{seconds:>7.2f} s   (runs: {', '.join(f'{s:.2f}' for s in times[name])})")
    best = min((s, n) for n, s in medians.items() if n.startswith("floor"))
    ratio = medians["flowkit-loader apply"] / best[0]
    print(f"notebook / ours: {medians['notebook flow'] / medians['flowkit-loader apply']:.2f}x "
          "(for information)")  # fmt: skip
    print(f"ours / floor ({best[1]}): {ratio:.2f} (must be at most {MAX_RATIO:.2f})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
