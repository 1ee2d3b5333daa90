"""Upstream's whole hand-run workflow over HTTP: the baseline a loader run is measured against.

A faithful copy of upstream's ``populate-database`` notebook
(``../shared/reference/populate-database-notebook.txt``), run against any server that
speaks FlowKit-UI's REST API, ``flowkit-loader serve`` included:

* cell 1: GET /heartbeat; cell 2: M2M tokens (``fetch_token``, called by the caller);
* cells 3-5: GET /categories, POST /setup (gzip), GET /categories;
* cell 6: the "Data cleaning" loop and cell 8's preparation, reused from
  ``bench/prepare.py`` (``notebook_cleaning``, ``notebook_ingest_data``), then cell 8's
  ingestion: one ``httpx.AsyncClient``, gzip bodies, ``CHUNK_SIZE = 50`` requests per
  ``asyncio.gather``, indicator after indicator, file after file;
* cells 10, 19 and 25: the access rules, a /query ``mdids_only`` per rule, then one
  POST /scope_mapping per (scope, mdid).

From Python::

    token = fetch_token(f"{root}/oauth/token", audience, "dev-admin", secret)
    result = run_notebook_flow(f"{root}/v1", token, upstream_config())

``result`` holds the counts (datasets posted, mappings posted, statuses), seconds per
phase and the notebook's printed transcript. ``upstream_config()`` is upstream's
config.json with the ids of ``tests/data/upstream/manifest.yaml`` (languages en 1, fr 2,
ht 3; data provider 1; srid Department 1, Commune 2, Communal section 3; trid Year 1,
Month 2, Week 3, Day 4).

From the command line, ``python bench/notebook_flow.py [--latency] [--upstream-quirks]``
starts ``python -m loader serve`` on a fresh SQLite file on loopback, fetches the
dev-admin token, runs the flow, stops the server and checks its store: 149 datasets, and
exactly the scope mappings the notebook's access rules select (3 for read:free_data, 12
for read:premium_data), visible to readers holding those permissions. With ``--base-url``
it runs against an existing server instead (token from ``--token-url``, ``--audience``,
``--client-id`` and the secret in $NOTEBOOK_CLIENT_SECRET) and checks nothing stored.
The exit status is non-zero when a check fails.

Deviations from the notebook are marked ``# deviation:`` where they happen. In short:
base URL and token are arguments (not environment variables and globals); the config is
the caller's (upstream's has no ids); the updater token the notebook fetches and never
uses is not fetched; cell 7 (a ``wc``/``head``/``tail`` look at a CSV) is left out;
``content=`` instead of httpx's deprecated ``data=`` for raw bodies (the same bytes);
``asyncio.run`` instead of Jupyter's top-level ``await``; categories and indicators fall
back to the posted config when the service lists none (it lists only those with a visible
dataset, so on a fresh deployment the notebook as written stops with an IndexError in
cell 8); a 500 from POST /setup is checked with GET /setup, as a human reading it would;
failures that the notebook would hit as a KeyError/TypeError raise a RuntimeError that
says what the server answered. Kept as they are: the notebook's admin token for every
call, its dataset bodies (``dt`` a datetime that ``json.dumps(..., default=str)`` writes
as "YYYY-MM-DD HH:MM:SS", the format the service requires; values as the CSV's text),
its 201/204-only success test for POST /data, and its 204-only test for POST
/scope_mapping (the service answers 201, so every mapping is logged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import itertools
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from common import (
    SERVE_AUDIENCE,
    UPSTREAM_DATA,
    UPSTREAM_MANIFEST,
    serving,
)
from prepare import SYNTHETIC_FILES, notebook_cleaning, notebook_ingest_data

from loader.backends.store import Principal, Store
from loader.model import EntityKind
from loader.validation import load_manifest

CHUNK_SIZE = 50  # cell 8
EXPECTED_DATASETS = 149

Datasets = dict[str, dict[str, dict[str, Any]]]  # indicator_id -> date_string -> body


# ---------------------------------------------------------------------------------------
# Config and tokens


def upstream_config(manifest_path: Path = UPSTREAM_MANIFEST) -> dict[str, list[dict[str, Any]]]:
    """Upstream's config.json with explicit ids, as the manifest assigns them: the
    entities of its setup grouped by kind (every list present, config.json's order)."""
    setup = load_manifest(manifest_path).setup()
    config: dict[str, list[dict[str, Any]]] = {kind.value: [] for kind in EntityKind}
    for entity in setup.entities:
        # a JSON round trip: plain, independent dicts (the bodies are the loader's own)
        config[entity.kind.value].append(json.loads(json.dumps(entity.body)))
    return config


def fetch_token(token_url: str, audience: str, client_id: str, client_secret: str) -> str:
    """Cell 2: an M2M access token by the OAuth2 client-credentials grant (Auth0's shape)."""
    response = httpx.post(
        url=token_url,
        headers={"Content-Type": "application/json"},
        # As in the notebook, the body is built by string formatting (a quote in a secret
        # would break it). deviation: content= for httpx's deprecated data= (same bytes).
        content=f'{{"client_id":"{client_id}","client_secret":"{client_secret}","audience":"{audience}","grant_type":"client_credentials"}}',
    )
    print(response)
    answer = json.loads(response.content)
    # deviation: the notebook fails here with a KeyError; say what the server answered.
    if not isinstance(answer, dict) or "access_token" not in answer:
        raise RuntimeError(f"POST {token_url}: {response.status_code} {response.text[:300]}")
    return str(answer["access_token"])


# ---------------------------------------------------------------------------------------
# The notebook's cells


def log(response: httpx.Response) -> None:
    """Cell 1's `log`."""
    to_print = f"{response.status_code}: " if response.status_code != 200 else ""
    if hasattr(response, "content") and response.content is not None and response.content != b"":
        try:
            to_print += json.dumps(json.loads(response.content), indent=4)
        except Exception:
            to_print += "<could not decode response>"
    else:
        to_print += "<no content>"
    print(to_print)


def heartbeat(base_url: str) -> None:
    """Cell 1 (after the imports and `log`)."""
    response = httpx.get(f"{base_url}/heartbeat")

    print(f"Welcome to {os.getenv('APP_NAME')}!")
    log(response)


def get_categories(base_url: str, token: str) -> list[dict[str, Any]]:
    """Cells 3 and 5."""
    response = httpx.get(url=f"{base_url}/categories", headers={"Authorization": f"Bearer {token}"})
    log(response)
    categories: list[dict[str, Any]] = json.loads(response.content)["categories"]
    return categories


def post_setup(base_url: str, token: str, config: dict[str, Any]) -> httpx.Response:
    """Cell 4. deviation: the config is the caller's, not read from the package's
    resources/config.json (upstream's has no ids, and without them every re-post
    re-creates languages, providers and spatial resolutions under new ids)."""
    response = httpx.post(
        url=f"{base_url}/setup",
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {token}",
        },
        # deviation: content= for httpx's deprecated data= (the same bytes on the wire)
        content=gzip.compress(json.dumps(config).encode("utf-8")),
        timeout=3600,
    )
    log(response)
    return response


def check_setup_landed(base_url: str, config: dict[str, Any]) -> None:
    """deviation: the notebook only logs POST /setup's answer and goes on. The real
    service answers 500 after writing everything (hazard 1; `serve --upstream-quirks`
    too); a human who sees that 500 does not re-post (that is the re-post hazard) but
    looks whether the config is there. Cell 5 cannot tell (GET /categories lists only
    categories with a visible dataset: none on a fresh deployment), so look where the
    service answers unfiltered: GET /setup must list the config's languages and data
    providers. Anything missing stops the run."""
    response = httpx.get(f"{base_url}/setup")
    stored = json.loads(response.content) if response.status_code == 200 else {}
    missing = [
        f"{kind} {item.get(field)!r}"
        for kind, field in (("languages", "code"), ("data_providers", "name"))
        for item in config.get(kind, [])
        if item.get(field) not in {s.get(field) for s in stored.get(kind, [])}
    ]
    if response.status_code != 200 or missing:
        raise RuntimeError(
            f"POST /setup failed and the config is not there (GET /setup answered "
            f"{response.status_code}; missing: {', '.join(missing) or 'all'})"
        )
    print("GET /setup: the config's languages and data providers are there; going on")


def chunked_iterable(iterable: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """Cell 8."""
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            break
        yield chunk


async def post_async(
    ds: dict[str, Any], client: httpx.AsyncClient, base_url: str, token: str
) -> httpx.Response:
    """Cell 8. deviation: base URL and token are arguments, not the notebook's globals."""
    return await client.post(
        url=f"{base_url}/data",
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {token}",
        },
        # deviation: content= for httpx's deprecated data= (the same bytes on the wire)
        content=gzip.compress(json.dumps(ds, default=str).encode("utf-8")),
        timeout=3600,
    )


async def ingest_data(
    file_name: str,
    files: dict[str, dict[str, Any]],
    categories: list[dict[str, Any]],
    config: dict[str, Any],
    tmp_dir: str,
    base_url: str,
    token: str,
    tally: dict[str, Any],
) -> None:
    """Cell 8's `ingest_data`: the GET of the category's indicators, the preparation
    (bench/prepare.py's copy of it), then the chunked ingestion. Counts go to `tally`."""
    start_time = time.monotonic()
    category_id = files[file_name]["category_id"]
    # get all indicators for that category
    # deviation: this GET runs before the "Processing file" print, which the reused
    # preparation makes (the notebook makes it just before the GET).
    response = httpx.get(
        url=f"{base_url}/indicators_for_category/{category_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    indicators = json.loads(response.content)["indicators"]
    # deviation: the service lists only indicators (and categories) with a dataset the
    # caller may see: on a fresh deployment both lists are empty, and the notebook as
    # written stops with an IndexError on `[c for c in categories ...][0]` (or prepares
    # nothing and divides by zero). A human falls back to the config just posted.
    if not indicators:
        indicators = config["indicators"]
        tally["fallbacks"].append(f"indicators_for_category/{category_id}")
    if not any(c["category_id"] == category_id for c in categories):
        categories = config["categories"]
        tally["fallbacks"].append(f"categories ({category_id})")
    datasets: Datasets = notebook_ingest_data(
        file_name, files, categories, {"indicators": indicators}, tmp_dir
    )
    total_num = sum(len(by_date) for by_date in datasets.values())  # the notebook's count
    tally["preparation"] += time.monotonic() - start_time

    print(f"Starting ingestion of data for {len(datasets)} indicators...")
    async with httpx.AsyncClient() as client:
        start_time = time.monotonic()
        num = 0
        for indicator_id in datasets:
            print(
                f"    Ingesting {len(datasets[indicator_id].values())} datasets for indicator {indicator_id}",  # noqa: E501
                end="",
                flush=True,
            )

            for chunk in chunked_iterable(datasets[indicator_id].values(), size=CHUNK_SIZE):
                print(".", end="", flush=True)
                responses = await asyncio.gather(
                    *(post_async(ds, client, base_url, token) for ds in chunk)
                )
                for response in responses:
                    tally["data_statuses"][response.status_code] += 1
                    if response.status_code not in [201, 204]:
                        print("")
                        log(response)
                    else:
                        num += 1
            print("")

        print(
            f"Ingested {num}/{total_num} datasets ({round(num / total_num * 100, 2)}%) in {round(time.monotonic() - start_time, 2)}s"  # noqa: E501
        )
        tally["ingestion"] += time.monotonic() - start_time
    tally["datasets_posted"] += num
    tally["datasets_prepared"] += total_num


# Cell 10, as it is.
DATA_ACCESS: dict[str, list[dict[str, Any]]] = {
    "read:free_data": [
        {
            "category_id": "residents",
            "indicator_id": "residents.residents",
            "srid": 3,
            "trid": 2,
            "start_date": "2020-02",
            "duration": 3,
        }
    ],
    "read:premium_data": [
        {
            "category_id": "residents",
            "indicator_id": "residents.residents",
            "srid": 3,
            "trid": 2,
            "start_date": "2020-02",
            "duration": 6,
        },
        {
            "category_id": "residents",
            "indicator_id": "residents.residents_perKm2",
            "srid": 3,
            "trid": 2,
            "start_date": "2020-02",
            "duration": 6,
        },
    ],
}


def get_scope_mappings(
    base_url: str, token: str, data_access: dict[str, list[dict[str, Any]]]
) -> dict[str, list[str]]:
    """Cell 19: the mdids of each scope's queries (strings, as the service answers)."""
    scope_mappings: dict[str, list[str]] = {}
    for scope in data_access:  # noqa: PLC0206 - as in the notebook
        scope_mappings[scope] = []
        for query in data_access[scope]:
            query["mdids_only"] = True
            response = httpx.post(
                url=f"{base_url}/query",
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "Authorization": f"Bearer {token}",
                },
                # deviation: content= for httpx's deprecated data= (the same bytes)
                content=gzip.compress(json.dumps(query).encode("utf-8")),
            )
            # deviation: the notebook fails here with a TypeError (a 404 body is a string)
            if response.status_code != 200:
                raise RuntimeError(f"POST /query {query}: {response.status_code} {response.text}")
            scope_mappings[scope] += json.loads(response.content)["mdids"]
    print(scope_mappings)
    return scope_mappings


def post_scope_mappings(
    base_url: str, token: str, scope_mappings: dict[str, list[str]]
) -> Counter[int]:
    """Cell 25. The notebook logs every answer but 204; the service answers 201 for a new
    mapping (303 for an existing one), so every mapping is logged, as it would be."""
    statuses: Counter[int] = Counter()
    for scope in scope_mappings:  # noqa: PLC0206 - as in the notebook
        for mdid in scope_mappings[scope]:
            scope_mapping = {"scope": scope, "mdid": mdid}
            response = httpx.post(
                url=f"{base_url}/scope_mapping",
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "Authorization": f"Bearer {token}",
                },
                # deviation: content= for httpx's deprecated data= (the same bytes)
                content=gzip.compress(json.dumps(scope_mapping).encode("utf-8")),
            )
            statuses[response.status_code] += 1
            if response.status_code != 204:
                log(response)
    print("Done.")
    return statuses


# ---------------------------------------------------------------------------------------
# The whole notebook


def run_notebook_flow(
    base_url: str,
    token: str,
    config: dict[str, Any],
    data_dir: Path = UPSTREAM_DATA,
    *,
    echo: bool = False,
) -> dict[str, Any]:
    """Every cell of the notebook after the tokens, in order, against `base_url` (like
    http://127.0.0.1:PORT/v1) with one admin-scoped `token` (the notebook uses its admin
    token for every call). The notebook's prints go to stdout with `echo`, otherwise to
    the result's "transcript". Returns the counts, the statuses and seconds per phase."""
    buffer = io.StringIO()
    redirect = contextlib.nullcontext() if echo else contextlib.redirect_stdout(buffer)
    tally: dict[str, Any] = {
        "preparation": 0.0,
        "ingestion": 0.0,
        "datasets_posted": 0,
        "datasets_prepared": 0,
        "data_statuses": Counter(),
        "fallbacks": [],
    }
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with redirect, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # datetime.utcnow on 3.12+

        mark = time.perf_counter()
        heartbeat(base_url)  # cell 1
        get_categories(base_url, token)  # cell 3 (its answer is replaced by cell 5's)
        setup = post_setup(base_url, token, config)  # cell 4
        if setup.status_code != 204:
            check_setup_landed(base_url, config)
        categories = get_categories(base_url, token)  # cell 5
        seconds["setup"] = time.perf_counter() - mark

        files = SYNTHETIC_FILES  # cell 6 (SYNTHETIC = True)
        # deviation: the preprocessed CSVs go to a temporary directory, not /tmp itself
        with tempfile.TemporaryDirectory(prefix="notebook-flow-") as tmp_dir:
            mark = time.perf_counter()
            notebook_cleaning(files, str(data_dir), tmp_dir)
            seconds["cleaning"] = time.perf_counter() - mark

            # deviation: cell 7 (wc, head and tail of a preprocessed CSV) only displays.

            async def doit() -> None:  # cell 8
                for file_name in files.keys():  # noqa: SIM118 - as in the notebook
                    await ingest_data(
                        file_name, files, categories, config, tmp_dir, base_url, token, tally
                    )

            # deviation: asyncio.run for the notebook's top-level `await doit()` (Jupyter)
            asyncio.run(doit())
        seconds["preparation"] = tally["preparation"]
        seconds["ingestion"] = tally["ingestion"]

        mark = time.perf_counter()
        # a copy: cell 19 adds "mdids_only" to the rules (harmless), keep the constant
        data_access = json.loads(json.dumps(DATA_ACCESS))
        scope_mappings = get_scope_mappings(base_url, token, data_access)  # cell 19
        seconds["query"] = time.perf_counter() - mark
        mark = time.perf_counter()
        mapping_statuses = post_scope_mappings(base_url, token, scope_mappings)  # cell 25
        seconds["scope_mapping"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return {
        "setup_status": setup.status_code,
        "datasets_prepared": tally["datasets_prepared"],
        "datasets_posted": tally["datasets_posted"],
        "data_statuses": dict(tally["data_statuses"]),
        "config_fallbacks": tally["fallbacks"],  # lists the service answered empty
        "scope_mappings": scope_mappings,
        "mappings_requested": sum(len(m) for m in scope_mappings.values()),
        "mappings_posted": sum(n for s, n in mapping_statuses.items() if s in (201, 204)),
        "mapping_statuses": dict(mapping_statuses),
        "seconds": seconds,
        "transcript": buffer.getvalue(),
    }


# ---------------------------------------------------------------------------------------
# Command line: against a fresh `serve`, with checks of its store


def month_range(start: str, duration: int) -> tuple[str, str]:
    """The first and last `dt` of `duration` months from `start` ("YYYY-MM")."""
    year, month = (int(part) for part in start.split("-"))
    last = year * 12 + month - 1 + duration - 1
    return f"{start}-01 00:00:00", f"{last // 12:04d}-{last % 12 + 1:02d}-01 00:00:00"


def expected_mappings(store: Store) -> dict[str, set[int]]:
    """What the notebook's rules select, read from the store's own tables (not through
    /query): per scope, the mdids of the rule's monthly datasets from its start month
    over `duration` months (the rules are all monthly)."""
    result: dict[str, set[int]] = {}
    for scope, rules in DATA_ACCESS.items():
        result[scope] = set()
        for rule in rules:
            rows = store.connection().execute(
                "SELECT mdid FROM metadata WHERE category_id = ? AND indicator_id = ? "
                "AND srid = ? AND trid = ? AND dt BETWEEN ? AND ?",
                (rule["category_id"], rule["indicator_id"], rule["srid"], rule["trid"],
                 *month_range(rule["start_date"], rule["duration"])),
            )  # fmt: skip
            result[scope] |= {int(row[0]) for row in rows}
    return result


def check_store(db_path: Path, quirks: bool) -> list[str]:
    """Problems with what the flow left in a `serve` store (empty: all is well)."""
    problems: list[str] = []
    store = Store(str(db_path), quirks=quirks)
    try:
        db = store.connection()
        datasets = db.execute("SELECT COUNT(DISTINCT mdid) FROM metadata").fetchone()[0]
        if datasets != EXPECTED_DATASETS:
            problems.append(f"{datasets} datasets stored, expected {EXPECTED_DATASETS}")
        stored: dict[str, set[int]] = {}
        for scope, mdid in db.execute("SELECT scope, mdid FROM scope_mapping WHERE scope != ?",
                                      ("admin",)):  # fmt: skip
            stored.setdefault(scope, set()).add(int(mdid))
        wanted = expected_mappings(store)
        if stored != wanted:
            problems.append(f"scope mappings {stored} differ from the expected {wanted}")
        duplicates = db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM scope_mapping GROUP BY scope, mdid "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        if duplicates:
            problems.append(f"{duplicates} scope mappings stored twice")
        # What readers holding those permissions now see, as /query shows it.
        for scope, rules in DATA_ACCESS.items():
            reader = Principal(frozenset({"read:free_data"}), frozenset({scope}))
            for rule in rules:
                reply = store.query({**rule, "duration": 6, "mdids_only": True}, reader)
                seen = {int(m) for m in reply.body["mdids"]} if reply.status == 200 else set()
                if seen != wanted[scope] & expected_for_rule(store, rule):
                    problems.append(f"a {scope} reader sees {sorted(seen)} for {rule}")
    finally:
        store.close()
    return problems


def expected_for_rule(store: Store, rule: dict[str, Any]) -> set[int]:
    rows = store.connection().execute(
        "SELECT mdid FROM metadata WHERE indicator_id = ? AND srid = ? AND trid = ?",
        (rule["indicator_id"], rule["srid"], rule["trid"]),
    )
    return {int(row[0]) for row in rows}


def print_result(result: dict[str, Any], wall: float) -> None:
    print(
        f"POST /setup {result['setup_status']}; datasets posted "
        f"{result['datasets_posted']}/{result['datasets_prepared']} "
        f"{result['data_statuses']}; mappings posted "
        f"{result['mappings_posted']}/{result['mappings_requested']} "
        f"{result['mapping_statuses']}"
    )
    if result["config_fallbacks"]:
        print("from the posted config (listed empty): " + ", ".join(result["config_fallbacks"]))
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items()))
    print(f"wall time (token + flow): {wall:.2f}s")


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--base-url", help="an existing server (…/v1); default: start serve")
    arguments.add_argument("--token-url", help="with --base-url: the token endpoint")
    arguments.add_argument("--audience", default=SERVE_AUDIENCE)
    arguments.add_argument("--client-id", default="dev-admin")
    arguments.add_argument("--latency", action="store_true", help="serve with its cost model")
    arguments.add_argument(
        "--upstream-quirks", action="store_true", help="serve with upstream's hazards"
    )
    arguments.add_argument("--echo", action="store_true", help="print the notebook's output")
    options = arguments.parse_args(argv)
    config = upstream_config()

    if options.base_url:
        secret = os.environ.get("NOTEBOOK_CLIENT_SECRET", "")
        token_url = options.token_url or options.base_url.removesuffix("/v1") + "/oauth/token"
        start = time.perf_counter()
        token = fetch_token(token_url, options.audience, options.client_id, secret)
        result = run_notebook_flow(options.base_url, token, config, echo=options.echo)
        print_result(result, time.perf_counter() - start)
        return 0

    flags = {"--latency": options.latency, "--upstream-quirks": options.upstream_quirks}
    extra = [flag for flag, on in flags.items() if on]
    secret = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="bench-notebook-flow-") as directory:
        db_path = Path(directory) / "serve.db"
        with serving(db_path, secret, *extra) as base_url:
            start = time.perf_counter()
            token_url = base_url.removesuffix("/v1") + "/oauth/token"
            token = fetch_token(token_url, options.audience, options.client_id, secret)
            result = run_notebook_flow(base_url, token, config, echo=options.echo)
            wall = time.perf_counter() - start
        print(f"serve {' '.join(extra) or '(no options)'}")
        print_result(result, wall)
        problems = check_store(db_path, options.upstream_quirks)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(
            f"store checked: {EXPECTED_DATASETS} datasets; scope mappings exactly the "
            "notebook's, and readers see them"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
