"""How fast does the local backend ingest datasets, compared with bare SQLite?

``python bench/local_backend.py`` prepares upstream's four synthetic files (read in place
from ``../shared/reference/upstream-data`` through ``tests/data/upstream/manifest.yaml``)
into their 149 canonical datasets (283,530 values) once, outside any timing, then measures
in the same run, three times each (a fresh SQLite file every time, the three alternating so
that noise on the shared machine hits them alike):

* floor: bare ``sqlite3`` into one table (dataset id, unit, destination, value as INTEGER
  nanos), WAL and ``synchronous=NORMAL`` as the store sets them, no index, one
  ``executemany`` per dataset inside its own transaction (one dataset = one write, the
  backend's granularity);
* in-process: ``LocalBackend.create_dataset`` for every dataset (config posted beforehand
  with ``replace_setup``, untimed);
* over HTTP: ``python -m loader serve --port 0`` (no cost model, no quirks) in a
  subprocess; an admin token from its ``/oauth/token`` and ``POST /v1/setup`` (untimed);
  then every dataset is POSTed to ``/v1/data`` as a gzip JSON body, 4 requests in flight
  (httpx.AsyncClient), every answer must be 201. The timing includes building the request
  bodies (values written as the exact decimal text of their nanos, then gzip): that is the
  client's real cost, and it runs on the same two cores as the server.

After each run the database must hold 283,530 values (the store's value count,
or of the floor's table). The medians (values/s), where serve's time goes (each stage of
POST /data timed alone: gunzip, JSON, the per-value checks, the store's write) and the
ratios in-process / floor and HTTP / floor are printed, rounded to two places; the
printed ratio is the one compared: the exit status is non-zero when in-process is below
0.5x the floor or HTTP below 0.25x, or when a run wrote the wrong number of values.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

import httpx

RUNS = 3
IN_FLIGHT = 4
GZIP_LEVEL = 6  # zlib's usual default (gzip.compress's own default, 9, is slower)
MIN_IN_PROCESS = 0.5
MIN_HTTP = 0.25
EXPECTED_DATASETS = 149
EXPECTED_VALUES = 283_530
AUDIENCE = "https://flowkit-ui-backend.local"
REQUEST_TIMEOUT = 120.0


from common import (  # noqa: E402
    UPSTREAM_DATA,
    UPSTREAM_MANIFEST,
    fail,
    load_manifest,
    prepare,
    serving,
)

from loader.backends.local import LocalBackend  # noqa: E402
from loader.backends.remote import dataset_body as remote_body  # noqa: E402
from loader.backends.store import Store  # noqa: E402
from loader.model import Dataset, EntityKind, Manifest  # noqa: E402

# ---------------------------------------------------------------------------------------
# Preparation (untimed)


def config_of(manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    """The config entities of the manifest's setup, as POST /setup takes them."""
    setup = manifest.setup()
    return {
        kind.value: [dict(e.body) for e in setup.entities if e.kind is kind] for kind in EntityKind
    }


def count_rows(db_path: Path, table: str) -> int:
    db = sqlite3.connect(db_path)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def stored_values(db_path: Path) -> int:
    """Values held by a store (it keeps each dataset's values packed in one row)."""
    store = Store(str(db_path))
    try:
        return store.value_count()
    finally:
        store.close()


@contextmanager
def fresh_db(name: str) -> Iterator[Path]:
    """A path for a new SQLite file in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as directory:
        yield Path(directory) / f"{name}.db"


# ---------------------------------------------------------------------------------------
# Floor: bare sqlite3


def run_floor(datasets: list[Dataset]) -> tuple[float, int]:
    """Seconds to insert every row, one transaction per dataset; rows found afterwards."""
    with fresh_db("floor") as path:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE data (dataset INTEGER NOT NULL, unit TEXT NOT NULL, "
                "destination TEXT, nanos INTEGER NOT NULL)"
            )
            start = time.perf_counter()
            for number, dataset in enumerate(datasets, 1):
                columns = dataset.unit_columns
                destinations = columns[1] if len(columns) > 1 else repeat(None)
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO data(dataset, unit, destination, nanos) VALUES (?, ?, ?, ?)",
                    zip(repeat(number), columns[0], destinations, dataset.values),
                )
                db.execute("COMMIT")
            seconds = time.perf_counter() - start
        finally:
            db.close()
        return seconds, count_rows(path, "data")


# ---------------------------------------------------------------------------------------
# In-process: LocalBackend


def run_in_process(
    datasets: list[Dataset], config: dict[str, list[dict[str, Any]]]
) -> tuple[float, int]:
    """Seconds for create_dataset of every dataset; values in the store afterwards."""
    with fresh_db("local") as path:
        backend = LocalBackend(path)
        try:
            backend.replace_setup(config)
            start = time.perf_counter()
            for dataset in datasets:
                if not backend.create_dataset(dataset).created:
                    fail(f"in-process: {dataset.key} was not created")
            seconds = time.perf_counter() - start
        finally:
            backend.store.close()
        return seconds, stored_values(path)


# ---------------------------------------------------------------------------------------
# Over HTTP: flowkit-loader serve


def dataset_body(dataset: Dataset) -> bytes:
    """The gzip JSON body of POST /data as the loader's remote client builds it (each
    value the exact decimal text of its nanos)."""
    return gzip.compress(remote_body(dataset), compresslevel=GZIP_LEVEL)


async def post_all(base: str, secret: str, datasets: list[Dataset], config: Any) -> float:
    """Token and setup (untimed), then every dataset (timed, bodies built in the loop)."""
    root = base.removesuffix("/v1")
    timeout = httpx.Timeout(REQUEST_TIMEOUT)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        answer = await client.post(
            f"{root}/oauth/token",
            json={
                "client_id": "dev-admin",
                "client_secret": secret,
                "audience": AUDIENCE,
                "grant_type": "client_credentials",
            },
        )
        if answer.status_code != 200:
            fail(f"POST /oauth/token: {answer.status_code} {answer.text}")
        headers = {
            "Authorization": f"Bearer {answer.json()['access_token']}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        setup_body = gzip.compress(json.dumps(config).encode(), compresslevel=GZIP_LEVEL)
        answer = await client.post(f"{base}/setup", content=setup_body, headers=headers)
        if answer.status_code != 204:
            fail(f"POST /setup: {answer.status_code} {answer.text[:300]}")

        statuses: list[int] = []
        pending = iter(datasets)

        async def worker() -> None:
            for dataset in pending:  # shared iterator: each dataset goes to one worker
                body = dataset_body(dataset)
                reply = await client.post(f"{base}/data", content=body, headers=headers)
                statuses.append(reply.status_code)
                if reply.status_code != 201:
                    fail(f"POST /data {dataset.key}: {reply.status_code} {reply.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        seconds = time.perf_counter() - start
    if len(statuses) != len(datasets) or set(statuses) != {201}:
        fail(f"POST /data: expected {len(datasets)} x 201, got {sorted(set(statuses))}")
    return seconds


def run_http(datasets: list[Dataset], config: dict[str, list[dict[str, Any]]]) -> tuple[float, int]:
    """Seconds to POST every dataset to a fresh server; values in its store afterwards."""
    secret = secrets.token_urlsafe(24)
    with fresh_db("serve") as path:
        with serving(path, secret) as base:
            seconds = asyncio.run(post_all(base, secret, datasets, config))
        return seconds, stored_values(path)


# ---------------------------------------------------------------------------------------
# Main


def body_building_seconds(datasets: list[Dataset]) -> float:
    """What building every request body costs alone (for the report, untimed above)."""
    start = time.perf_counter()
    for dataset in datasets:
        dataset_body(dataset)
    return time.perf_counter() - start


def serve_stages(
    datasets: list[Dataset], config: dict[str, list[dict[str, Any]]]
) -> dict[str, float]:
    """What serve does with each POST /data body, stage by stage, in this process: gunzip,
    JSON decoding, the per-value checks and conversion, the store's write (a fresh file),
    one body at a time as serve takes them. The rest of the HTTP time is the server's
    framework, the token check, and waiting for the client."""
    bodies = [dataset_body(d) for d in datasets]
    # serve's heap is small; this process holds every dataset, which the collector would
    # walk again and again while JSON builds its objects: set them aside, as serve has none.
    gc.collect()
    gc.freeze()
    stages = dict.fromkeys(("gunzip", "JSON", "values", "store"), 0.0)
    with fresh_db("stages") as path:
        store = Store(str(path))
        try:
            store.post_setup(config)
            for body in bodies:
                start = time.perf_counter()
                text = gzip.decompress(body)
                decoded = time.perf_counter()
                payload = json.loads(text)
                parsed = time.perf_counter()
                incoming = store.parse_dataset(payload)
                checked = time.perf_counter()
                if store.write_dataset(incoming, replace=False).status != 201:
                    fail("serve stages: a write was refused")
                written = time.perf_counter()
                stages["gunzip"] += decoded - start
                stages["JSON"] += parsed - decoded
                stages["values"] += checked - parsed
                stages["store"] += written - checked
        finally:
            store.close()
            gc.unfreeze()
    return stages


def main() -> int:
    if not UPSTREAM_DATA.is_dir():
        fail(f"upstream reference data not found at {UPSTREAM_DATA}")
    manifest = load_manifest(UPSTREAM_MANIFEST)
    datasets = prepare(manifest)
    config = config_of(manifest)
    values = sum(len(d.values) for d in datasets)
    if len(datasets) != EXPECTED_DATASETS or values != EXPECTED_VALUES:
        fail(
            f"expected {EXPECTED_DATASETS} datasets and {EXPECTED_VALUES:,} values, "
            f"got {len(datasets)} and {values:,}"
        )

    runs: dict[str, Callable[[], tuple[float, int]]] = {
        "floor": lambda: run_floor(datasets),
        "in-process": lambda: run_in_process(datasets, config),
        "http": lambda: run_http(datasets, config),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    status = 0
    for _ in range(RUNS):  # alternate, so that noise on the machine hits all alike
        for name, run in runs.items():
            seconds, stored = run()
            times[name].append(seconds)
            if stored != values:
                print(f"FAIL: {name} stored {stored:,} values, expected {values:,}")
                status = 1

    rate = {name: values / statistics.median(t) for name, t in times.items()}
    print(f"{len(datasets)} datasets, {values:,} values; {RUNS} runs each, medians")
    print(f"{'':11} {'median':>8} {'min':>8} {'max':>8} {'values/s':>11} {'/ floor':>8}")
    for name, t in times.items():
        print(
            f"{name:11} {statistics.median(t):7.3f}s {min(t):7.3f}s {max(t):7.3f}s "
            f"{rate[name]:11,.0f} {rate[name] / rate['floor']:7.2f}x"
        )
    building = body_building_seconds(datasets)
    print(
        f"(http includes building and gzipping the bodies, {IN_FLIGHT} in flight; "
        f"building alone: {building:.3f}s)"
    )
    stages = ", ".join(
        f"{name} {seconds:.3f}s" for name, seconds in serve_stages(datasets, config).items()
    )
    print(f"where serve's time goes, each stage of POST /data alone: {stages}")
    # The ratios as printed are the ratios compared (a raw 0.2496 printed as 0.25 fails).
    in_process = round(rate["in-process"] / rate["floor"], 2)
    http = round(rate["http"] / rate["floor"], 2)
    print(
        f"ratio in-process/floor: {in_process:.2f} (required >= {MIN_IN_PROCESS}); "
        f"http/floor: {http:.2f} (required >= {MIN_HTTP})"
    )
    if in_process < MIN_IN_PROCESS:
        print(f"FAIL: in-process is {in_process:.2f}x the floor (< {MIN_IN_PROCESS})")
        status = 1
    if http < MIN_HTTP:
        print(f"FAIL: http is {http:.2f}x the floor (< {MIN_HTTP})")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
