"""How fast does flowkit-loader load a deployment, compared with upstream's notebook?

Against ``flowkit-loader serve --upstream-quirks --latency`` on loopback (the real
service's hazards, and its cost per request and per value), in one session, each on a
fresh database:

* the notebook: a faithful copy of its whole flow (``bench/notebook_flow.py``: setup,
  per-cell preparation, 50-at-a-time ingestion, the scope mappings of its access rules),
  timed from its token to its last mapping;
* ours: ``loader.apply`` of the upstream manifest (``tests/data/upstream/manifest.yaml``,
  the same data read in place, the notebook's access rules), timed from the call to its
  return: validation and preparation (no cache), plan, setup, datasets, grants, state.

The two final databases are then compared: the same config, the same datasets (identity,
revision, data type, min, max, every unit and value), the same scope mappings (by dataset
identity; mdids and dates added differ by nature). Prints both times and the ratio
(notebook / ours); the exit status is non-zero when the databases differ or ours is less
than 2x faster.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SERVE_AUDIENCE, SERVE_SECRET_ENV, fail, served_manifest, serving
from notebook_flow import fetch_token, run_notebook_flow, upstream_config

import loader

MIN_RATIO = 2.0
SERVE_OPTIONS = ("--upstream-quirks", "--latency")


def notebook(directory: Path, secret: str) -> float:
    with serving(directory / "notebook.db", secret, *SERVE_OPTIONS) as base:
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


def ours(directory: Path, secret: str) -> float:
    with serving(directory / "ours.db", secret, *SERVE_OPTIONS) as base:
        manifest = served_manifest(directory, base)
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
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-apply-") as scratch:
        directory = Path(scratch)
        theirs_seconds = notebook(directory, secret)
        ours_seconds = ours(directory, secret)
        theirs, mine = contents(directory / "notebook.db"), contents(directory / "ours.db")
    for part in ("entities", "datasets", "mappings"):
        if theirs[part] != mine[part]:
            fail(f"the final databases differ in their {part}")
    values = sum(row[4] for row in mine["datasets"].values())
    print(f"final databases identical: {len(mine['entities'])} config entities, "
          f"{len(mine['datasets'])} datasets ({values:,} values), "
          f"{len(mine['mappings'])} scope mappings")  # fmt: skip
    print(f"notebook flow: {theirs_seconds:.2f} s")
    print(f"flowkit-loader apply: {ours_seconds:.2f} s")
    ratio = theirs_seconds / ours_seconds
    print(f"ratio notebook / ours: {ratio:.2f}x (must be at least {MIN_RATIO}x)")
    return 0 if ratio >= MIN_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
