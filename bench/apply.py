"""How close does flowkit-loader's apply come to the fastest a client can load a deployment?

Against ``flowkit-loader serve --upstream-quirks --latency`` on loopback (the real
service's hazards, and its cost per request and per value: the values of all requests are
written one request at a time, as the real service's single database does), in one
session, each on a fresh database:

* the floor: a bare httpx client that sends exactly the writes apply sends (POST /setup,
  the 149 datasets as the very bodies apply builds, prepared before the clock starts, then
  the 164 scope mappings), at fixed concurrencies of 1, 2, 4 and 8; the best is the floor;
* ours: ``loader.apply`` of the upstream manifest (``tests/data/upstream/manifest.yaml``,
  the same data read in place, the notebook's access rules), timed from the call to its
  return: validation and preparation (no cache), plan, setup and its checks, datasets,
  grants, journal and state record;
* for information, the notebook: a faithful copy of its whole flow
  (``bench/notebook_flow.py``), timed from its token to its last mapping.

Each is run RUNS times, alternately, and the medians are compared. The final databases of
ours and the notebook are compared: the same config, the same datasets (identity,
revision, data type, min, max, every unit and value), the same scope mappings (by dataset
identity; mdids and dates added differ by nature). Prints the times, ours / floor (the bar:
at most 1.10) and notebook / ours; the exit status is non-zero when the databases differ
or ours is above the bar.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import (
    SERVE_AUDIENCE,
    SERVE_SECRET_ENV,
    UPSTREAM_MANIFEST,
    fail,
    load_manifest,
    prepare,
    served_manifest,
    serving,
)
from notebook_flow import fetch_token, run_notebook_flow, upstream_config

import loader
from loader.backends.remote import dataset_body
from loader.model import DatasetKey, EntityKind
from loader.planner import GrantTarget

MAX_RATIO = 1.10  # ours / the floor
RUNS = 3
CONCURRENCIES = (1, 2, 4, 8)
SERVE_OPTIONS = ("--upstream-quirks", "--latency")


@dataclass(frozen=True)
class Writes:
    """What apply writes to an empty backend, prepared: the setup body, each dataset's key
    and body, and the grants (scope, dataset key)."""

    setup: dict[str, list[Any]]
    datasets: list[tuple[DatasetKey, bytes]]
    grants: list[tuple[str, DatasetKey]]


def planned_writes(directory: Path, secret: str) -> Writes:
    """The writes of a plan of the upstream manifest against an empty serve."""
    manifest = load_manifest(UPSTREAM_MANIFEST)
    setup = manifest.setup()
    config: dict[str, list[Any]] = {kind.value: [] for kind in EntityKind}
    for entity in setup.entities:
        config[entity.kind.value].append(entity.body)
    datasets = [(d.key, dataset_body(d)) for d in prepare(manifest)]
    with serving(directory / "planned.db", secret, *SERVE_OPTIONS) as base:
        made = loader.plan(served_manifest(directory, base), environ={SERVE_SECRET_ENV: secret})
    grants = [(c.target.scope, c.target.key) for c in made.changes
              if isinstance(c.target, GrantTarget)]  # fmt: skip
    return Writes(config, datasets, grants)


def floor(directory: Path, secret: str, writes: Writes, concurrency: int, run: int) -> float:
    """A bare client sending `writes` with `concurrency` requests in flight."""
    with serving(directory / f"floor-{concurrency}-{run}.db", secret, *SERVE_OPTIONS) as base:
        with contextlib.redirect_stdout(io.StringIO()):
            token = fetch_token(base.removesuffix("/v1") + "/oauth/token", SERVE_AUDIENCE,
                                "dev-admin", secret)  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        with httpx.Client(base_url=base, headers=headers, limits=limits, timeout=120) as client:

            def post_dataset(item: tuple[DatasetKey, bytes]) -> tuple[DatasetKey, int]:
                response = client.post("/data", content=item[1])
                if response.status_code != 201:
                    fail(f"floor: POST /data answered {response.status_code}")
                return item[0], int(response.json())

            def post_mapping(item: tuple[str, int]) -> None:
                response = client.post("/scope_mapping", json={"scope": item[0], "mdid": item[1]})
                if response.status_code != 201:
                    fail(f"floor: POST /scope_mapping answered {response.status_code}")

            start = time.perf_counter()
            setup = client.post("/setup", json=writes.setup)
            if setup.status_code not in (204, 500):  # upstream's 500 after a full write
                fail(f"floor: POST /setup answered {setup.status_code}")
            with ThreadPoolExecutor(concurrency) as pool:
                mdids = dict(pool.map(post_dataset, writes.datasets))
                list(pool.map(post_mapping, [(s, mdids[k]) for s, k in writes.grants]))
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
        writes = planned_writes(directory, secret)
        for run in range(RUNS):
            for concurrency in CONCURRENCIES:
                took = floor(directory, secret, writes, concurrency, run)
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
